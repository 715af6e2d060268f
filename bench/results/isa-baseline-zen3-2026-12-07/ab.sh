#!/bin/bash
# Alternating A/B of bench_prefill, five rounds: NEW (this build) vs OLD (another build's bench_prefill).
# Usage: ab.sh NEW_BENCH_PREFILL OLD_BENCH_PREFILL MODEL OUT_DIR; then parse.py OUT_DIR.
set -euo pipefail
new=$1 old=$2 model=$3 out=$4
mkdir -p "$out"
for r in 1 2 3 4 5; do
  for b in new old; do
    bin=$new; [ $b = old ] && bin=$old
    "$bin" --model="$model" --tokens=2048 --chunks=512 --threads=1,2 --compare=512,2048 --decode=0 --min-time=1 \
      > "$out/ab2-$b-$r.txt" 2>&1
  done
done
