#!/usr/bin/env python3
"""Throughput of `ilre batch run` against one `ilre ask --doc` process per (document, question), same run
(tooling only: Python 3 stdlib, never the engine path).

Generates --docs documents of about --tokens tokens each with `make_document` (one needle per document,
"The code word for document K is WORD." at depth 0.5, a different word per document), writes a job that asks
--questions questions of every document (the needle question, from the document's own `questions`, plus
generic ones from the job's `questions`), and then measures, one after the other on the same files:

  batch       `ilre batch run JOB.yaml --set ...`: one process, each document ingested once, its
              questions asked over its store, documents run concurrently (the job's `concurrency`)
  sequential  `ilre ask --doc FILE --question Q --set ...` once per (document, question): every call loads
              the model and ingests the document again, which is what the batch path saves

Both get the same --set overrides (decode.max_tokens=16 so decode time is comparable, the recall budget) and
the same model and thread count. Reported for each: wall seconds, CPU seconds of the child processes,
documents/hour and document tokens/s (documents x their tokens / wall: the work asked for, not counting
re-ingests), needle accuracy (the document's code word in the answer); and the ratio batch vs sequential
by wall time and by CPU time. The load average before and after each phase is recorded: on a busy machine
the wall ratio moves, the CPU ratio much less.

  python3 bench/batch_throughput.py --docs 20 --tokens 32768 --questions 5 --out-json /tmp/bt.json
  python3 bench/batch_throughput.py --model tests/data/models/stories260K-f32.gguf --docs 3 --tokens 2048 --questions 2 --budget 256

Every loop is bounded; nothing is built; the work folder is emptied of earlier results before each run.
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import cpu_info, log, wait_quiet  # noqa: E402

WORDS = ["marigold", "tangerine", "obsidian", "lavender", "cobalt", "saffron", "juniper", "quartz", "hemlock",
         "vermilion", "pumice", "sorrel", "bramble", "topaz", "walnut", "cinder", "magnolia", "pewter", "thistle",
         "indigo", "larkspur", "basalt", "cardamom", "fennel", "garnet", "heather", "ivory", "jasper", "kestrel",
         "lichen", "mulberry", "nutmeg", "oleander", "paprika", "quince", "russet", "sequoia", "tamarind"]

GENERIC_QUESTIONS = ["What is this document about?", "Who is mentioned first in the document?",
                     "What happens at the end of the document?", "Which places are named in the document?",
                     "Summarise the first paragraph in one sentence.", "What is the tone of the document?",
                     "Which objects are mentioned most often?", "What is the last sentence about?"]


def code_word(k):
    return WORDS[k] if k < len(WORDS) else f"{WORDS[k % len(WORDS)]}{k}"


def needle_question(k):
    return f"What is the code word for document {k}?"


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return [float(x) for x in f.read().split()[:3]]
    except OSError:
        return None


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(cmd, timeout, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kw)


def yaml_str(s):
    return json.dumps(s)  # a JSON string is a YAML flow scalar


def make_documents(args, work):
    docs = []
    for k in range(args.docs):
        path = os.path.join(work, "docs", f"doc-{k:03d}.txt")
        needle = f"The code word for document {k} is {code_word(k)}."
        cmd = [args.make_document, f"--model={args.model}", f"--tokens={args.tokens}", f"--out={path}",
               f"--seed={k + 1}", f"--needle=0.5:{needle}"]
        r = run(cmd, timeout=600)
        if r.returncode != 0:
            raise SystemExit(f"make_document failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr}")
        tokens = int(r.stdout.split(": ", 1)[1].split(" tokens", 1)[0])
        docs.append({"k": k, "id": f"doc-{k:03d}", "path": path, "tokens": tokens, "word": code_word(k),
                     "needle_question": needle_question(k)})
    return docs


def write_job(args, work, docs, generic):
    lines = ["# Written by bench/batch_throughput.py", f"model: {yaml_str(os.path.abspath(args.model))}",
             f"output: {yaml_str('results.jsonl')}", f"stores: {yaml_str('stores')}",
             f"concurrency: {args.concurrency}", "on_error: continue"]
    lines.append("questions:" + ("" if generic else " []"))
    lines += [f"  - {yaml_str(q)}" for q in generic]
    lines.append("documents:")
    for d in docs:
        lines += [f"  - id: {yaml_str(d['id'])}", f"    path: {yaml_str(os.path.relpath(d['path'], work))}",
                  f"    questions: [{yaml_str(d['needle_question'])}]"]
    path = os.path.join(work, "job.yaml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def correct(answer, word):
    return answer is not None and word.lower() in answer.lower()


def phase_batch(args, work, job, docs, sets):
    for p in ("results.jsonl", "results.jsonl.config.yaml", "stores"):
        full = os.path.join(work, p)
        if os.path.isdir(full):
            shutil.rmtree(full)
        elif os.path.exists(full):
            os.remove(full)
    cmd = [args.ilre, "batch", "run", job] + sets
    log("batch: " + " ".join(cmd))
    la0, c0, t0 = loadavg(), children_cpu(), time.monotonic()
    r = run(cmd, timeout=args.timeout)
    wall, cpu = time.monotonic() - t0, children_cpu() - c0
    if r.returncode not in (0, 3):
        raise SystemExit(f"ilre batch run failed ({r.returncode}):\n{r.stderr[-4000:]}")
    summary = [l for l in r.stderr.splitlines() if l.startswith("batch:")]
    by_key = {}
    with open(os.path.join(work, "results.jsonl")) as f:
        for line in f:
            j = json.loads(line)
            by_key[(j["document"], j["question"])] = j
    hits, errors = 0, 0
    for d in docs:
        j = by_key.get((d["id"], d["needle_question"]))
        hits += bool(j and correct(j.get("answer"), d["word"]))
    errors = sum(1 for j in by_key.values() if j.get("error"))
    st = run([args.ilre, "batch", "status", job, "--json"], timeout=120)
    status = json.loads(st.stdout) if st.returncode == 0 else {"error": st.stderr[-2000:]}
    return {"command": " ".join(cmd), "exit": r.returncode, "wall_s": wall, "cpu_s": cpu, "loadavg_before": la0,
            "loadavg_after": loadavg(), "results": len(by_key), "errors": errors, "needle_hits": hits,
            "summary": summary[-1] if summary else None,
            "status": {k: status.get(k) for k in ("questions", "done", "failed", "remaining")} if "error" not in status else status}


def phase_sequential(args, work, docs, questions_of, sets):
    la0, c0, t0 = loadavg(), children_cpu(), time.monotonic()
    hits, errors, calls, per_call = 0, 0, 0, []
    example = None
    for d in docs:
        for q in questions_of(d):
            cmd = [args.ilre, "ask", "--model", args.model, "--doc", d["path"], "--question", q] + sets + ["--json"]
            example = example or " ".join(cmd)
            s0 = time.monotonic()
            r = run(cmd, timeout=args.timeout)
            per_call.append(time.monotonic() - s0)
            calls += 1
            answer = None
            if r.returncode == 0:
                try:
                    answer = json.loads(r.stdout).get("text")
                except json.JSONDecodeError:
                    pass
            if answer is None:
                errors += 1
                log(f"ask failed ({r.returncode}) on {d['id']}: {r.stderr[-500:]}")
            if q == d["needle_question"]:
                hits += correct(answer, d["word"])
            log(f"sequential: {calls} calls, {time.monotonic() - t0:.0f} s")
    wall, cpu = time.monotonic() - t0, children_cpu() - c0
    return {"command": example, "calls": calls, "wall_s": wall, "cpu_s": cpu, "loadavg_before": la0,
            "loadavg_after": loadavg(), "errors": errors, "needle_hits": hits,
            "per_call_s": {"min": min(per_call), "max": max(per_call), "mean": sum(per_call) / len(per_call)}}


def rates(p, n_docs, doc_tokens):
    p["documents_per_hour"] = n_docs * 3600.0 / p["wall_s"]
    p["tokens_per_s"] = doc_tokens / p["wall_s"]
    p["needle_accuracy"] = p["needle_hits"] / n_docs
    return p


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(ROOT, "models/gemma-3-270m-q4_k_m.gguf"))
    ap.add_argument("--docs", type=int, default=20)
    ap.add_argument("--tokens", type=int, default=32768)
    ap.add_argument("--questions", type=int, default=5, help="per document, the needle question included")
    ap.add_argument("--ilre", default=os.path.join(ROOT, "build/cli/ilre"))
    ap.add_argument("--make-document", default=os.path.join(ROOT, "build/bench/make_document"))
    ap.add_argument("--max-tokens", type=int, default=16, help="decode.max_tokens of every answer (both paths)")
    ap.add_argument("--budget", type=int, default=1024,
                    help="recall.budget of every answer (both paths); -1 = the engine default (75%% of the "
                         "trained context: a 24K-token final pass on Gemma)")
    ap.add_argument("--concurrency", default="auto", help="the job's concurrency: auto or N")
    ap.add_argument("--set", action="append", default=[], help="more --set k=v for both paths")
    ap.add_argument("--order", choices=("batch-first", "sequential-first"), default="batch-first")
    ap.add_argument("--wait-quiet", type=float, default=0.0,
                    help="before each phase, wait up to this many seconds for other work to use < 0.25 cores")
    ap.add_argument("--timeout", type=float, default=7200.0, help="seconds per process")
    ap.add_argument("--work", default="/tmp/ilre-batch-throughput")
    ap.add_argument("--out-json", default=None)
    args = ap.parse_args()
    if not 1 <= args.questions <= len(GENERIC_QUESTIONS) + 1:
        raise SystemExit(f"--questions must be in [1, {len(GENERIC_QUESTIONS) + 1}]")
    for p in (args.ilre, args.make_document, args.model):
        if not os.path.exists(p):
            raise SystemExit(f"{p} is missing (this script builds nothing)")

    work = os.path.abspath(args.work)
    os.makedirs(os.path.join(work, "docs"), exist_ok=True)
    docs = make_documents(args, work)
    generic = GENERIC_QUESTIONS[:args.questions - 1]
    job = write_job(args, work, docs, generic)
    sets = ["--set", f"decode.max_tokens={args.max_tokens}"]
    if args.budget >= 0:
        sets += ["--set", f"recall.budget={args.budget}"]
    for s in args.set:
        sets += ["--set", s]
    doc_tokens = sum(d["tokens"] for d in docs)

    def questions_of(d):
        return generic + [d["needle_question"]]  # the order batch asks them in: the job's, then the document's

    phases = {}
    order = ["batch", "sequential"] if args.order == "batch-first" else ["sequential", "batch"]
    for name in order:
        quiet = wait_quiet(args.wait_quiet) if args.wait_quiet > 0 else None
        if name == "batch":
            phases[name] = phase_batch(args, work, job, docs, sets)
        else:
            phases[name] = phase_sequential(args, work, docs, questions_of, sets)
        phases[name]["other_cores_busy_before"] = quiet
        rates(phases[name], len(docs), doc_tokens)
        log(f"{name}: {phases[name]['wall_s']:.1f} s wall, {phases[name]['cpu_s']:.1f} s CPU, "
            f"needle {phases[name]['needle_hits']}/{len(docs)}")

    b, s = phases["batch"], phases["sequential"]
    out = {
        "cpu": cpu_info(),
        "model": args.model,
        "docs": len(docs), "tokens_per_doc": [d["tokens"] for d in docs], "document_tokens": doc_tokens,
        "questions_per_doc": args.questions, "sets": sets, "concurrency": args.concurrency, "order": order,
        "batch": b, "sequential": s,
        "ratio_wall": s["wall_s"] / b["wall_s"],
        "ratio_cpu": s["cpu_s"] / b["cpu_s"] if b["cpu_s"] > 0 else None,
        "target_ratio": 1.5,
    }
    out["target_met"] = out["ratio_wall"] >= out["target_ratio"]
    text = json.dumps(out, indent=2)
    if args.out_json:
        with open(args.out_json, "w") as f:
            f.write(text + "\n")
    print(text)
    print(f"\n{len(docs)} documents x {doc_tokens // len(docs)} tokens x {args.questions} questions, "
          f"{os.path.basename(args.model)}, {' '.join(sets)}", file=sys.stderr)
    for name, p in (("batch", b), ("sequential", s)):
        print(f"  {name:10s} {p['wall_s']:8.1f} s wall {p['cpu_s']:8.1f} s CPU  {p['documents_per_hour']:8.1f} docs/h"
              f"  {p['tokens_per_s']:8.1f} tok/s  needle {p['needle_hits']}/{len(docs)}  errors {p['errors']}", file=sys.stderr)
    if b["errors"] or s["errors"]:
        print("  WARNING: some answers failed (see the errors above): the figures do not compare like with like",
              file=sys.stderr)
    print(f"  ratio (sequential / batch wall time) {out['ratio_wall']:.2f}x (target >= 1.5x: "
          f"{'met' if out['target_met'] else 'not met'}); by CPU time {out['ratio_cpu']:.2f}x", file=sys.stderr)


if __name__ == "__main__":
    main()
