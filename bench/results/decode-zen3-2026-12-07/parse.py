#!/usr/bin/env python3
"""Medians of decode_ab.sh's rounds: ilre and llama.cpp decode tok/s per thread count, and their ratio."""
import pathlib
import re
import statistics
import sys


def decode_rows(text):
    _, _, tail = text.partition("decode,")
    return {int(m[1]): float(m[2]) for m in re.finditer(r"^\s*(\d+)\s+([\d.]+)\s*$", tail, re.M)}


def main():
    out = pathlib.Path(sys.argv[1])
    runs = {"ilre": [], "llama": []}
    for f in sorted(out.glob("*-*.txt")):
        runs[f.name.split("-")[0]].append(decode_rows(f.read_text()))
    print("| threads | ilre tok/s (rounds) | llama.cpp tok/s (rounds) | median ratio |")
    print("|---:|---|---|---:|")
    for t in sorted(runs["ilre"][0]):
        a = [r[t] for r in runs["ilre"]]
        b = [r[t] for r in runs["llama"]]
        print(f"| {t} | {statistics.median(a):.1f} ({', '.join(f'{x:.1f}' for x in a)}) | "
              f"{statistics.median(b):.1f} ({', '.join(f'{x:.1f}' for x in b)}) | "
              f"{statistics.median(a) / statistics.median(b):.2f}x |")


if __name__ == "__main__":
    main()
