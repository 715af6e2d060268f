#!/bin/bash
# ilre (this build) vs llama.cpp (llama-cpp-python) prompt processing, three alternating rounds.
# Usage: vs_llamacpp.sh BENCH_PREFILL PYTHON_WITH_LLAMA_CPP MODEL OUT_DIR
set -euo pipefail
bench=$1 py=$2 model=$3 out=$4
here=$(cd "$(dirname "$0")/../../.." && pwd)
mkdir -p "$out"
for r in 1 2 3; do
  "$bench" --model="$model" --tokens=512 --chunks=512 --threads=1,2 --compare=512,2048 --decode=0 --min-time=1 \
    > "$out/ilre-$r.txt" 2>&1
  "$py" "$here/scripts/bench_llamacpp_prefill.py" "$model" > "$out/llamacpp-$r.txt" 2>&1
done
