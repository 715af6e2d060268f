#!/usr/bin/env bash
# Installs every build, test and set-up dependency of ilre from Debian 12's packages.
# Used by the README's first command and by .ci/run, so a fresh machine and CI install the same set.
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  build-essential cmake ninja-build git ca-certificates pkg-config \
  libboost-dev libboost-system-dev libboost-thread-dev \
  libeigen3-dev libzstd-dev libspdlog-dev libfmt-dev nlohmann-json3-dev libyaml-cpp-dev libcli11-dev \
  zlib1g-dev libexpected-dev libgtest-dev libgmock-dev libbenchmark-dev libutf8proc-dev prometheus-cpp-dev \
  python3 python3-pip python3-venv time zstd curl nginx
# Test tooling only (never the engine's run path): the official openai client the daemon tests talk
# through, in a virtualenv inside the checkout (git-ignored) that CMake's ILRE_TOOLS_PYTHON points at.
repo=$(cd "$(dirname "$0")/.." && pwd)
if ! "$repo/.venv/bin/python3" -c "import openai" 2>/dev/null; then
  python3 -m venv "$repo/.venv"
  "$repo/.venv/bin/pip" install -q --disable-pip-version-check "openai>=1.40"
fi
