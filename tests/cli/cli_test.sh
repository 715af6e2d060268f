#!/usr/bin/env bash
# End-to-end checks of the ilre command line on stories260K: output formats, exit codes, error messages.
# Usage: cli_test.sh <path to ilre> <shared dir>
set -u
ilre="$1"
shared="$2"
model="$shared/models/stories260K-f32.gguf"
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

if [ "$failures" -ne 0 ]; then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all CLI checks passed"
