#!/usr/bin/env bash
# Every headline figure of bench/README.md in one run (issue 10 §4): the machine's peaks, prefill and decode
# vs llama.cpp, ingest of a 1M-token document against the int8 peak, peak RSS at 64K vs 1M, spill bytes per
# token, and the follow-up question on the stored 1M-token document at budgets 1K..24K. About 15 minutes on
# 2 cores; never in CI. The report (markdown) goes to stdout and $WORK/report.md.
#
#   bench/run_all.sh [--model m.gguf] [--python /path/with/llama_cpp/python] [--tokens 1048576] [--work DIR]
#
# The llama.cpp rows need an interpreter with llama-cpp-python (pip install llama-cpp-python in a virtualenv;
# tooling only) given by --python or $LLAMA_CPP_PYTHON; without one they are left out.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
[ -x "$root/build/bench/bench_prefill" ] || { echo "build first: cmake --build build" >&2; exit 2; }
exec python3 "$root/bench/run_all.py" "$@"
