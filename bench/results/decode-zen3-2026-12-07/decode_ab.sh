#!/usr/bin/env bash
# Decode tok/s, ilre vs llama.cpp, alternating rounds in one session (this VM drifts 15-25% between rounds):
#   decode_ab.sh BENCH_PREFILL PYTHON MODEL OUT [ROUNDS]
# BENCH_PREFILL = build/bench/bench_prefill; PYTHON has llama-cpp-python; OUT gets ilre-R.txt and llama-R.txt.
set -euo pipefail
bench=$1; py=$2; model=$3; out=$4; rounds=${5:-3}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
for r in $(seq 1 "$rounds"); do
  "$bench" --model="$model" --chunks= --compare= --decode=64 --threads=1,2 --min-time=0.3 > "$out/ilre-$r.txt" 2>&1
  "$py" "$here/../../../scripts/bench_llamacpp_prefill.py" "$model" --lengths 16 --decode 64 > "$out/llama-$r.txt" 2>&1
done
