#!/usr/bin/env bash
# End-to-end checks of the ilre command line on stories260K: output formats, exit codes, error messages.
# Usage: cli_test.sh <path to ilre> <tests/data dir>
set -u
ilre="$1"
data="$2"
model="$data/models/stories260K-f32.gguf"
failures=0
check() {  # check <name> <expected regex> <command...>
  local name="$1" want="$2"
  shift 2
  local out
  out=$("$@" 2>&1)
  if ! grep -qE -- "$want" <<<"$out"; then
    echo "FAIL $name: expected /$want/ in:"
    echo "$out" | head -20
    failures=$((failures + 1))
  else
    echo "ok   $name"
  fi
}
check_rc() {  # check_rc <name> <expected exit code> <command...>
  local name="$1" want="$2"
  shift 2
  "$@" > /dev/null 2>&1
  local rc=$?
  if [ "$rc" -ne "$want" ]; then
    echo "FAIL $name: exit code $rc, expected $want"
    failures=$((failures + 1))
  else
    echo "ok   $name"
  fi
}

check "tokenize adds BOS" '^\[1,403,407,261,378\]$' "$ilre" tokenize --model "$model" --text "Once upon a time"
check "tokenize --no-bos" '^\[403,407,261,378\]$' "$ilre" tokenize --model "$model" --text "Once upon a time" --no-bos
check "special text is plain without --parse-special" '^\[1(,[0-9]+){4,}\]$' "$ilre" tokenize --model "$model" --text "</s>"
check "--parse-special maps </s> to EOS" '^\[1,2\]$' "$ilre" tokenize --model "$model" --text "</s>" --parse-special
check "model found by name" '^\[1,403\]$' "$ilre" tokenize --model stories260K-f32 --text "Once"
check "ILRE_MODEL is honoured" '^\[1,403\]$' env ILRE_MODEL="$model" "$ilre" tokenize --text "Once"
check "greedy generate" 'there was a little girl named Lily' "$ilre" generate --model "$model" -p "Once upon a time" -n 16 --temp 0
check "logits JSON shape" '^\{"tokens": \[1,403\], "logits": \[\[-?[0-9]' "$ilre" logits --model "$model" -p "Once"
check "logits --last prints one row" '^\{"tokens": \[1,403,407\], "logits": \[\[[^]]*\]\]\}$' "$ilre" logits --model "$model" -p "Once upon" --last
check "info reports the architecture" '"architecture": "llama"' "$ilre" info --model "$model"
check "missing model lists where it looked" 'model not found; tried:' "$ilre" tokenize --model no-such-model --text hi
check_rc "missing model exits 1" 1 "$ilre" tokenize --model no-such-model --text hi
check "not a GGUF file" "bad_gguf: .*not a GGUF file" "$ilre" tokenize --model "$0" --text hi
check_rc "missing --text is a usage error" 106 "$ilre" tokenize --model "$model"
check "help lists sub-commands" 'tokenize' "$ilre" --help
check "--version names the version" '^ilre [0-9]+\.[0-9]+\.[0-9]+' "$ilre" --version
# Vocabulary-only GGUF files (llama.cpp's ggml-vocab-*.gguf): tokenize reads only the vocabulary. Expected
# ids are the first case of llama.cpp's own vectors ("ied 4 ½ months").
check "tokenize a vocabulary-only BPE file" '^\[798,604,25208,1933\]$' \
  "$ilre" tokenize --model "$data/tokenizer/ggml-vocab-gpt-2.gguf" --text "ied 4 ½ months" --no-bos
check "tokenize a vocabulary-only SPM file" '^\[474,287,29871,29946,29871,30226,7378\]$' \
  "$ilre" tokenize --model "$data/tokenizer/ggml-vocab-llama-spm.gguf" --text "ied 4 ½ months" --no-bos
check "generate on a vocabulary-only file is a clear error" 'token_embd.weight' \
  "$ilre" generate --model "$data/tokenizer/ggml-vocab-llama-spm.gguf" -p hi -n 1
check "logits --kv-type f32" '^\{"tokens": \[1,403\], "logits": \[\[-?[0-9]' "$ilre" logits --model "$model" -p "Once" --kv-type f32
check "logits --numerics exact" '^\{"tokens": \[1,403\], "logits": \[\[-?[0-9]' "$ilre" logits --model "$model" -p "Once" --numerics exact
check "an unknown --kv-type is a usage error" 'kv-type' "$ilre" logits --model "$model" -p "Once" --kv-type q8
check "greedy generate with an F32 cache" 'there was a little girl named Lily' "$ilre" generate --model "$model" -p "Once upon a time" -n 16 --temp 0 --kv-type f32

# A document appended in parts with --keep-open is the whole document: same token count as one ingest.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for i in $(seq 1 40); do printf 'Lily went to the park with her mom — the sun was warm. Tom had a red ball. '; done > "$work/doc.txt"
head -c 1001 "$work/doc.txt" > "$work/a.txt"   # cuts inside a word
tail -c +1002 "$work/doc.txt" | head -c 997 > "$work/b.txt"
tail -c +1999 "$work/doc.txt" > "$work/c.txt"
settings=(--model "$model" --set prefill.layer=2 --set prefill.chunk=64 --set prefill.window=128 --set prefill.sink=8)
whole=$("$ilre" ingest "${settings[@]}" --doc "$work/doc.txt" --store "$work/whole" --json 2>/dev/null | grep -o '"total_tokens": [0-9]*')
"$ilre" ingest "${settings[@]}" --doc "$work/a.txt" --store "$work/parts" --keep-open > /dev/null 2>&1
"$ilre" ingest "${settings[@]}" --doc "$work/b.txt" --store "$work/parts" --append --keep-open > /dev/null 2>&1
parts=$("$ilre" ingest "${settings[@]}" --doc "$work/c.txt" --store "$work/parts" --append --json 2>/dev/null | grep -o '"total_tokens": [0-9]*')
if [ -n "$whole" ] && [ "$whole" = "$parts" ]; then echo "ok   parts appended with --keep-open give the whole document's tokens ($whole)"; else
  echo "FAIL parts appended with --keep-open: '$parts' vs whole '$whole'"; failures=$((failures + 1)); fi
"$ilre" ingest "${settings[@]}" --doc "$work/a.txt" --store "$work/open" --keep-open > /dev/null 2>&1
check "--close finishes an open document" '"total_tokens": [0-9]+' "$ilre" ingest "${settings[@]}" --store "$work/open" --close --json
check "--close and --doc exclude each other" 'excludes' "$ilre" ingest "${settings[@]}" --store "$work/open" --close --doc "$work/a.txt"

# A sharded ingest — K pipelines in one run, or shards i/K run apart and merged — makes the sequential store:
# the same segment files and the same final state, byte for byte.
seg=(--set store.segment_tokens=256)
"$ilre" ingest "${settings[@]}" "${seg[@]}" --doc "$work/doc.txt" --store "$work/seq" > /dev/null 2>&1
check "ingest --shards 2" '"total_tokens": [0-9]+' "$ilre" ingest "${settings[@]}" "${seg[@]}" --doc "$work/doc.txt" --store "$work/sh2" --shards 2 --json
for i in 0 1 2; do "$ilre" ingest "${settings[@]}" "${seg[@]}" --doc "$work/doc.txt" --store "$work/part$i" --shard "$i/3" > /dev/null 2>&1; done
check "merge joins shards 0..2" '"total_tokens": [0-9]+' "$ilre" merge "${settings[@]}" --store "$work/merged" "$work/part0" "$work/part1" "$work/part2" --json
for s in sh2 merged; do
  if diff -rq "$work/seq/segments" "$work/$s/segments" > /dev/null && cmp -s "$work"/seq/state-*.bin "$work/$s"/state-*.bin; then
    echo "ok   $s: segments and state equal the sequential store's"
  else
    echo "FAIL $s: segments or state differ from the sequential store's"; failures=$((failures + 1))
  fi
done
check "asking a shard names the way out" 'merge the shards' "$ilre" ask "${settings[@]}" --store "$work/part1" -q "Who had a red ball?"
check "merge refuses a gap" 'starts at position' "$ilre" merge "${settings[@]}" --store "$work/gap" "$work/part0" "$work/part2"
check "--shard wants i/K" 'expected i/K' "$ilre" ingest "${settings[@]}" --doc "$work/doc.txt" --store "$work/x" --shard 3/3

# Every command on the other architectures (random-weight fixtures from scripts/make_arch_fixtures.py): the
# answers are noise, the commands must work end to end.
for arch in qwen2 qwen3 llama3 phi3; do
  m="$data/arch/$arch-tiny-f32.gguf"
  check "info on $arch" "\"architecture\": \"${arch/llama3/llama}\"" "$ilre" info --model "$m"
  check "generate on $arch" '.' "$ilre" generate --model "$m" -p "Once upon a time" -n 4 --temp 0
  check "logits on $arch" '^\{"tokens": \[1,403\], "logits": \[\[-?[0-9]' "$ilre" logits --model "$m" -p "Once"
  check "ingest on $arch" '"total_tokens": [0-9]+' "$ilre" ingest --model "$m" --doc "$work/doc.txt" --store "$work/$arch" --json
  check "ask on $arch" '"answer"' "$ilre" ask --model "$m" --store "$work/$arch" -q "Who had a red ball?" --budget 128 \
    --set decode.max_tokens=4 --json
done

# calibrate --evidence: a qa_real layer-probe result folded into the choice of l_R, and clear refusals.
probe_json() {  # probe_json <model file name>: a one-question qa_real probe at layers 1 and 3, budget 256
  printf '{"task":"qa_real","model":"/m/%s","settings":{"probe_layers":[1,3],"budgets":[256]},' "$1"
  printf '"contexts":[{"name":"d","questions":[{"id":"q1","heldout":false,"probe_cover":[[0.2],[0.9]]}]}]}\n'
}
probe_json stories260K-f32.gguf > "$work/probe.json"
probe_json other.gguf > "$work/probe-other.json"
calib=(calibrate --model "$model" --no-write --lengths 256 --digits 1 --kv-needles 0 --fact-needles 1 --budget 256)
check "calibrate --evidence ranks the probed layers" '^ +3 .* 0\.900 .*<- l_R' "$ilre" "${calib[@]}" --evidence "$work/probe.json"
check "calibrate --evidence of another model is refused" "was probed on other.gguf, not stories260K-f32.gguf" \
  "$ilre" "${calib[@]}" --evidence "$work/probe-other.json"
check "calibrate --evidence with a budget not probed" "budget 512 was not probed" \
  "$ilre" "${calib[@]/256/512}" --evidence "$work/probe.json"
check_rc "calibrate --evidence of a missing file exits 1" 1 "$ilre" "${calib[@]}" --evidence "$work/none.json"

if [ "$failures" -ne 0 ]; then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all CLI checks passed"
