#!/usr/bin/env bash
# Issue acceptance "constant memory": ingest generated documents of 64K, 256K and 1M tokens and compare
# peak RSS (GNU time) -- the 1M-token peak must be within 10% of the 64K-token one. Also reports ingest
# tokens/s and the key compression ratio from `ilre ingest --json`, then asks one question (recall only) and
# reports the score stage's read-back rate (both softmax passes over every stored key, decompression and
# checksums included) and the ask's peak RSS.
#
#   bench/constant_memory.sh [model.gguf ...]     (default: stories260K and Gemma 3 270M)
#   SIZES="65536 262144 1048576" WORK=/tmp/ilre-constmem bench/constant_memory.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/build"
work="${WORK:-/tmp/ilre-constmem}"
sizes=(${SIZES:-65536 262144 1048576})
models=("$@")
[ ${#models[@]} -gt 0 ] || models=("$root/tests/data/models/stories260K-f32.gguf" "$root/models/gemma-3-270m-q4_k_m.gguf")
mkdir -p "$work"
printf '%-28s %9s %12s %10s %9s %8s %14s %12s\n' model tokens peak_rss_MB tok/s key_ratio rss/64K score_ktok/s ask_rss_MB
for model in "${models[@]}"; do
  name="$(basename "$model" .gguf)"
  base=""
  for n in "${sizes[@]}"; do
    doc="$work/$name-$n.txt"
    [ -f "$doc" ] || "$bin/bench/make_document" --model="$model" --tokens="$n" --out="$doc" >/dev/null
    rm -rf "$work/$name-$n.store"
    /usr/bin/time -v -o "$work/$name-$n.time" "$bin/cli/ilre" ingest --model "$model" --doc "$doc" \
      --store "$work/$name-$n.store" --json > "$work/$name-$n.json"
    rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/$name-$n.time")
    read -r tokens tps ratio < <(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['total_tokens'], round(d['tokens_per_second']), round(d['key_compression_ratio'],3))" "$work/$name-$n.json")
    [ -n "$base" ] || base=$rss_kb
    "$bin/cli/ilre" ask --model "$model" --store "$work/$name-$n.store" --question "What is the pass key?" \
      --set decode.max_tokens=0 --json > "$work/$name-$n.ask.json"
    read -r score_ktps ask_rss < <(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(round(d['context_tokens'] / d['timings_ms']['score'], 1), round(d['peak_rss_mb'], 1))" "$work/$name-$n.ask.json")
    awk -v n="$name" -v t="$tokens" -v r="$rss_kb" -v b="$base" -v s="$tps" -v k="$ratio" -v q="$score_ktps" -v a="$ask_rss" \
      'BEGIN { printf "%-28s %9s %12.1f %10s %9s %8.3f %14s %12s\n", n, t, r / 1024, s, k, r / b, q, a }' 
    rm -rf "$work/$name-$n.store"
  done
done
