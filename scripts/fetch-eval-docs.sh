#!/usr/bin/env bash
# Installs the real documents of the qa_real suite (configs/eval-real.yaml) from Debian 12's packages:
# manuals nobody here wrote. The question files in configs/qa-real/ name each package and file; a different
# package version is reported by `ilre eval` when an evidence sentence is no longer found exactly once.
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends perl-doc python3.11-doc debian-policy
