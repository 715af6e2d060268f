"""Medians of ab.sh's runs per measurement (tok/s; sgemm GFLOP/s) and the new/old ratio of the medians."""
import glob
import re
import statistics as st
import sys

res = {}
for f in sorted(glob.glob(f"{sys.argv[1]}/ab2-*-*.txt")):
    build = f.rsplit("/", 1)[1].split("-")[1]
    t = open(f).read()
    table1 = re.findall(r"^ +(\d+) +([12]) +(\d+) +[\d.]+ +\d+%", t, re.M)
    prompt = re.findall(r"^ +(512|2048) +([12]) +(\d+)$", t, re.M)
    peak = re.search(r"sgemm peak GFLOP/s:\s+1 thr ([\d.]+)\s+2 thr ([\d.]+)", t).groups()
    for _, thr, v in table1:
        res.setdefault((build, "chunk512-2048tok", thr), []).append(int(v))
    for tokens, thr, v in prompt:
        res.setdefault((build, f"pp{tokens}", thr), []).append(int(v))
    res.setdefault((build, "sgemm", "1"), []).append(float(peak[0]))
    res.setdefault((build, "sgemm", "2"), []).append(float(peak[1]))
for m, thr in sorted({(k[1], k[2]) for k in res}):
    n, o = res.get(("new", m, thr)), res.get(("old", m, thr))
    if n and o:
        print(f"{m:18s} thr{thr}  new {n} med {st.median(n):.0f}  old {o} med {st.median(o):.0f}"
              f"  ratio {st.median(n) / st.median(o):.3f}")
