#!/usr/bin/env python3
"""Every headline figure of bench/README.md in one run on this machine (tooling only: Python 3 stdlib, plus
llama-cpp-python for the llama.cpp rows when the given interpreter has it). Called by bench/run_all.sh.

Prints, as one markdown report (and writes it with the raw outputs under --work):
  the machine (CPU, flags, the kernels ilre chose), the f32 sgemm and int8 dot-product peaks,
  whole-model prefill and decode vs llama.cpp on the same GGUF, tokens and threads,
  ingest of a 1M-token document (tokens/s, its weight ops as a share of the int8 peak), peak RSS at 64K vs 1M,
  spill bytes per token, and the follow-up question on the stored 1M-token document at several budgets
  (time to first answer token and where it went, per stage).
Every rate is set against a reference measured in the same run; none is a bare time to compare across
machines.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import machine  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NEEDLE = "The courier's name is Ottoline Brack."
QUESTION = "What is the courier's name?"


def run(cmd, out_path=None, **kw):
    machine.log("$ " + " ".join(cmd))
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if out_path:
        with open(out_path, "w") as f:
            f.write(p.stdout)
    if p.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    return p.stdout


def run_with_rss(cmd):
    """Runs cmd, polling its RSS; returns (stdout, peak RSS in MB, wall seconds). The output goes through
    files, not pipes: a pipe nobody reads while polling fills up (an answer's JSON at budget 24K is more than
    the 64 KB a pipe holds) and the child blocks on it for ever."""
    machine.log("$ " + " ".join(cmd))
    t0 = time.time()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        peak = 0
        while p.poll() is None:
            peak = max(peak, machine.rss_kb(p.pid) or 0)
            time.sleep(0.2)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if p.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({p.returncode}):\n{stderr[-2000:]}")
    return stdout, peak / 1024.0, time.time() - t0


def parse_rates(text):
    """The prompt-processing rows (tokens, threads, tok/s) and the decode rows (threads, tok/s) that
    bench_prefill and scripts/bench_llamacpp_prefill.py print alike."""
    r = {"pp": {}, "decode": {}}
    head, _, dec = text.partition("decode,")
    pp = head.split("prompt processing")[1] if "prompt processing" in head else head
    for n, thr, v in re.findall(r"^\s*(\d+)\s+(\d+)\s+([\d.]+)\s*$", pp, re.M):
        r["pp"][(int(n), int(thr))] = float(v)
    for thr, v in re.findall(r"^\s*(\d+)\s+([\d.]+)\s*$", dec, re.M):
        r["decode"][int(thr)] = float(v)
    return r


def parse_prefill(text):
    r = parse_rates(text)
    for key, label in (("sgemm", "Eigen sgemm peak GFLOP/s:"), ("int8", "int8 dot-product peak GOP/s:")):
        line = re.search(re.escape(label) + "(.*)", text).group(1)
        r[key] = {int(t): float(v) for t, v in re.findall(r"(\d+) thr ([\d.]+)", line)}
    r["layer_gop"] = float(re.search(r"layer weight ops per token and layer: ([\d.]+) GOP", text).group(1))
    r["kernels"] = re.search(r"kernels: (.*)", text).group(1)
    r["n_layer"] = int(re.search(r"model: .* \((\d+) layers\)", text).group(1))
    return r


def has_llama_cpp(python):
    if not python:
        return False
    return subprocess.run([python, "-c", "import llama_cpp"], capture_output=True).returncode == 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "gemma-3-270m-q4_k_m.gguf"))
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--work", default="/tmp/ilre-run-all")
    ap.add_argument("--python", default=os.environ.get("LLAMA_CPP_PYTHON", sys.executable),
                    help="an interpreter with llama-cpp-python for the llama.cpp rows (skipped without)")
    ap.add_argument("--tokens", type=int, default=1048576, help="the long document")
    ap.add_argument("--small", type=int, default=65536, help="the document whose peak RSS the long one's is set against")
    ap.add_argument("--budgets", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 24576])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    ilre = os.path.join(args.build, "cli", "ilre")
    bench = os.path.join(args.build, "bench")
    cpu = machine.cpu_info()
    machine.log(f"machine busy before the run: {machine.wait_quiet(120)} cores in use")

    # Peaks, prefill and decode, ilre then llama.cpp then ilre again: the VM's speed drifts, so each ratio
    # is given against both llama.cpp runs' bracket.
    thr = sorted({1, args.threads})
    pf_cmd = [os.path.join(bench, "bench_prefill"), f"--model={args.model}", "--tokens=2048", "--chunks=512",
              "--threads=" + ",".join(map(str, thr)), "--compare=512,2048", "--decode=64", "--min-time=1"]
    ilre_pf = parse_prefill(run(pf_cmd, os.path.join(args.work, "bench_prefill.txt")))
    llama = None
    if has_llama_cpp(args.python):
        llama = parse_rates(run([args.python, os.path.join(ROOT, "scripts", "bench_llamacpp_prefill.py"), args.model,
                                    "--threads", *map(str, thr), "--decode", "64"],
                                   os.path.join(args.work, "llamacpp.txt")))
    else:
        machine.log(f"{args.python} has no llama_cpp: the llama.cpp rows are left out (pip install llama-cpp-python)")

    # Ingest at the model's l_R: a 64K and a 1M-token document, the long one with a needle to ask about.
    docs = {}
    for n in (args.small, args.tokens):
        doc = os.path.join(args.work, f"doc-{n}.txt")
        if not os.path.exists(doc):
            run([os.path.join(bench, "make_document"), f"--model={args.model}", f"--tokens={n}", f"--out={doc}",
                 f"--needle=0.5:{NEEDLE}"])
        store = os.path.join(args.work, f"store-{n}")
        subprocess.run(["rm", "-rf", store], check=True)
        out, rss, wall = run_with_rss([ilre, "ingest", "--model", args.model, "--doc", doc, "--store", store, "--json",
                                       "-t", str(args.threads)])
        rep = json.loads(out)
        size = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(store) for f in fs)
        docs[n] = {"report": rep, "rss_mb": rss, "wall_s": wall, "store_bytes": size, "store": store}

    # The follow-up question on the long store: default budget first, then each asked one.
    asks = []
    long_store = docs[args.tokens]["store"]
    for b in [None] + args.budgets:
        cmd = [ilre, "ask", "--model", args.model, "--store", long_store, "-q", QUESTION, "--json", "-t", str(args.threads)]
        if b is not None:
            cmd += ["--budget", str(b)]
        out, rss, wall = run_with_rss(cmd)
        a = json.loads(out)
        a["_wall_s"], a["_rss_mb"], a["_budget_arg"] = wall, rss, b
        asks.append(a)

    report = format_report(cpu, ilre_pf, llama, docs, asks, args)
    with open(os.path.join(args.work, "report.md"), "w") as f:
        f.write(report)
    with open(os.path.join(args.work, "raw.json"), "w") as f:
        json.dump({"cpu": cpu, "docs": {str(k): v for k, v in docs.items()}, "asks": asks}, f, indent=1, default=str)
    print(report)


def ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "n/a"


def format_report(cpu, pf, llama, docs, asks, args):
    L = []
    L.append(f"## bench/run_all.sh — {cpu['model_name']} (family {cpu['cpu_family']}), {cpu['nproc']} cores, "
             f"{time.strftime('%Y-%m-%d')}")
    L.append("")
    L.append(f"flags: {' '.join(cpu['flags'])}; kernels: {pf['kernels']}; model {os.path.basename(args.model)}")
    L.append("")
    L.append("| peak | " + " | ".join(f"{t} thr" for t in sorted(pf["sgemm"])) + " |")
    L.append("|---|" + "---:|" * len(pf["sgemm"]))
    L.append("| Eigen sgemm GFLOP/s | " + " | ".join(f"{pf['sgemm'][t]:.1f}" for t in sorted(pf["sgemm"])) + " |")
    L.append("| int8 dot product GOP/s | " + " | ".join(f"{pf['int8'].get(t, 0):.1f}" for t in sorted(pf["sgemm"])) + " |")
    L.append("")
    L.append("| whole-model | tokens | threads | ilre tok/s | llama.cpp tok/s | ilre / llama.cpp |")
    L.append("|---|---:|---:|---:|---:|---:|")
    for (n, t), v in sorted(pf["pp"].items()):
        lv = llama["pp"].get((n, t)) if llama else None
        L.append(f"| prefill | {n} | {t} | {v:.0f} | {f'{lv:.0f}' if lv else 'n/a'} | {ratio(v, lv)} |")
    for t, v in sorted(pf["decode"].items()):
        lv = llama["decode"].get(t) if llama else None
        L.append(f"| decode (after 1,024) | 64 | {t} | {v:.1f} | {f'{lv:.1f}' if lv else 'n/a'} | {ratio(v, lv)} |")
    L.append("")
    small, big = docs[args.small], docs[args.tokens]
    rep = big["report"]
    layer = rep.get("layer")
    tps = rep.get("tokens_per_second", 0)
    ops = tps * pf["layer_gop"] * layer if layer else 0
    i8 = pf["int8"].get(args.threads, 0)
    L.append("| ingest | tokens | l_R | tok/s | weight GOP/s (% int8 peak) | peak RSS MB | RSS vs the smaller | spill bytes/token |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for n, d in sorted(docs.items()):
        r = d["report"]
        t = r.get("total_tokens", n)
        o = r.get("tokens_per_second", 0) * pf["layer_gop"] * r.get("layer", 0)
        L.append(f"| {n} | {t} | {r.get('layer')} | {r.get('tokens_per_second', 0):.0f} | "
                 f"{o:.1f} ({100 * o / i8 if i8 else 0:.1f}%) | {d['rss_mb']:.0f} | {d['rss_mb'] / small['rss_mb']:.2f} | "
                 f"{d['store_bytes'] / max(t, 1):.0f} |")
    if llama:
        best_llama = max(v for (n, t), v in llama["pp"].items() if t == args.threads)
        # llama.cpp's per-layer rate: its whole-model prefill runs n_layer layers per token, ingest l_R.
        n_layer = pf.get("n_layer")
        if n_layer and layer:
            L.append("")
            L.append(f"Ingest target (issue 10: llama.cpp's per-layer rate, {best_llama:.0f} tok/s x {n_layer} / {layer} = "
                     f"{best_llama * n_layer / layer:.0f} tok/s): ilre ingest {tps:.0f} tok/s = "
                     f"{ratio(tps, best_llama * n_layer / layer)} of it.")
    L.append("")
    L.append(f"Follow-up question on the stored {args.tokens}-token document (`ilre ask --store ... --json`), "
             f"needle \"{NEEDLE}\":")
    L.append("")
    stages = ["score", "lexical", "encode_query", "pool", "recall", "decode"]
    L.append("| budget | recalled | prompt | ttft ms | " + " | ".join(f"{s} ms" for s in stages) + " | answer |")
    L.append("|---|---:|---:|---:|" + "---:|" * len(stages) + "---|")
    for a in asks:
        tm = a.get("timings_ms", {})
        label = "default" if a["_budget_arg"] is None else str(a["_budget_arg"])
        ans = a.get("text", "").strip().replace("|", "/").replace("\n", " ")[:40]
        L.append(f"| {label} | {a.get('recalled')} | {a.get('prompt_tokens')} | {tm.get('ttft', 0):.0f} | " +
                 " | ".join(f"{tm.get(s, 0):.0f}" for s in stages) + f" | {ans} |")
    L.append("")
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    main()
