"""Medians of vs_llamacpp.sh's rounds: ilre and llama.cpp prompt tok/s and their ratio."""
import glob
import re
import statistics as st
import sys

runs = {"ilre": {}, "llamacpp": {}}
for name in runs:
    for f in sorted(glob.glob(f"{sys.argv[1]}/{name}-*.txt")):
        for tokens, thr, v in re.findall(r"^ +(512|2048) +([12]) +(\d+)$", open(f).read(), re.M):
            runs[name].setdefault((int(tokens), int(thr)), []).append(int(v))
for key in sorted(runs["ilre"]):
    i, l = runs["ilre"][key], runs["llamacpp"].get(key)
    if l:
        print(f"{key[0]:>5} tokens {key[1]} thr  ilre {i} med {st.median(i):.0f}  llama.cpp {l} med {st.median(l):.0f}"
              f"  ratio {st.median(i) / st.median(l):.2f}")
