#!/usr/bin/env python3
"""End-to-end tests of `ilre batch` on the tiny real model stories260K.

Usage: batch_test.py <ilre binary> <tests/data dir> <group>
Groups (one ctest each): jobs, resume, shard, openai.
"""
import fcntl
import json
import pty
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import e2e  # noqa: E402
from e2e import check, free_port, words  # noqa: E402

ILRE, DATA, GROUP = sys.argv[1], sys.argv[2], sys.argv[3]
MODEL = os.path.join(DATA, "models", "stories260K-f32.gguf")
SETTINGS = "{prefill.chunk: 64, prefill.window: 128, prefill.sink: 8, store.segment_tokens: 256, decode.max_tokens: 8, recall.budget: 96}"
QUESTIONS = ["Who lived in the big red house?", "What did the cat do?", "Where did Lily go?"]




def write_job(work, docs_yaml, extra="", output="out/answers.jsonl", settings=SETTINGS):
    path = os.path.join(work, "job.yaml")
    with open(path, "w") as f:
        f.write("model: %s\nsettings: %s\ndocuments:\n%s\nquestions: %s\noutput: %s\nstores: out/stores\n%s" %
                (MODEL, settings, docs_yaml, json.dumps(QUESTIONS), output, extra))
    return path


def run(*args, timeout=300):
    return subprocess.run([ILRE, "batch", *args], capture_output=True, text=True, timeout=timeout)


def lines_of(path):
    with open(path, "rb") as f:
        data = f.read()
    return data, [json.loads(l) for l in data.decode().splitlines() if l.strip()]


def stable(line):
    """A result without its timings: what must be the same whichever run or shard produced it."""
    return json.dumps({k: v for k, v in line.items() if k != "timings_ms"}, sort_keys=True)


def make_docs(work, n, size=3000):
    for i in range(n):
        with open(os.path.join(work, "d%02d.txt" % i), "w") as f:
            f.write(words(size + 400 * i, i))


def tty_progress(job, work, master, slave):
    shutil.rmtree(os.path.join(work, "out"))
    p = subprocess.Popen([ILRE, "batch", "run", job], stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    p.wait()
    os.close(master)
    check("progress: a bar with documents, tokens/s and ETA on a terminal", b"\r[" in seen and b"tok/s" in seen and b"ETA" in seen,
          seen[-400:])


def group_jobs(work):
    make_docs(work, 4)
    with open(os.path.join(work, "bad.txt"), "wb") as f:
        f.write(b"text \xff\xfe broken " * 50)
    open(os.path.join(work, "empty.txt"), "w").close()
    with open(os.path.join(work, "docs.jsonl"), "w") as f:
        f.write(json.dumps({"id": "inline", "text": words(900, 77), "questions": ["What did Tom have?"]}) + "\n")
        f.write("{not json\n")
        f.write(json.dumps({"id": "again", "path": "d00.txt"}) + "\n")
    job = write_job(work, '  - glob: "d*.txt"\n  - {id: bad, path: bad.txt}\n  - {id: empty, path: empty.txt}\n'
                          '  - {id: missing, path: nope.txt}\n  - jsonl: docs.jsonl\n', "concurrency: 2\n")
    r = first = run("run", job)
    check("a job with bad inputs runs to its end and exits 3 (some failed)", r.returncode == 3, r.stderr[-2000:])
    data, lines = lines_of(os.path.join(work, "out", "answers.jsonl"))
    expected = 4 * 3 + 3 * 3 + 4 + 3 + 3  # glob docs, bad/empty/missing, inline (+1 own), the bad line, again
    keys = [(l["document"], l["question"]) for l in lines]
    check("one line per (document, question): %d" % len(lines), len(lines) == expected and len(set(keys)) == len(keys), keys)
    errors = {l["document"]: l["error"] for l in lines if l["error"]}
    check("bad inputs give error lines naming the input",
          errors.get("bad", {}).get("code") == "bad_utf8" and "bad.txt" in errors["bad"]["message"] and
          "empty" in errors.get("empty", {}).get("message", "") and "nope.txt" in errors.get("missing", {}).get("message", "") and
          errors.get("docs.jsonl:2", {}).get("input") == "docs.jsonl:2", errors)
    ok = [l for l in lines if not l["error"]]
    check("answers carry spans, context tokens and timings", all(l["recalled"]["spans"] and l["context_tokens"] > 0 and
                                                               "total" in l["timings_ms"] for l in ok), ok[:2])
    m = [l for l in r.stderr.splitlines() if l.startswith("batch:")]
    check("each document is ingested once however many questions it has (summary: %s)" % (m[-1] if m else ""),
          m and " 6 documents ingested " in m[-1], r.stderr[-1500:])
    check("the stores are kept", sorted(os.listdir(os.path.join(work, "out", "stores"))) ==
          ["again", "d00.txt", "d01.txt", "d02.txt", "d03.txt", "inline"], os.listdir(os.path.join(work, "out", "stores")))
    check("the resolved config is written beside the output", os.path.exists(os.path.join(work, "out", "answers.jsonl.config.yaml")))
    r2 = run("run", job)
    data2, _ = lines_of(os.path.join(work, "out", "answers.jsonl"))
    check("a rerun of a finished job does nothing and still says some failed", r2.returncode == 3 and data2 == data and
          " 0 answered now" in r2.stderr, r2.stderr[-800:])
    # One run per results file: a second process on the same output refuses to start.
    with open(os.path.join(work, "out", "answers.jsonl"), "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        r3 = run("run", job)
    check("a second run on the same output is refused", r3.returncode == 1 and "another run is writing" in r3.stderr, r3.stderr[-300:])
    st = run("status", job, "--json")
    s = json.loads(st.stdout)
    check("status counts done and failed", s["done"] == expected and s["failed"] == 12 and s["remaining"] == 0, st.stdout[:500])
    check("progress: plain log lines off a terminal, and a final summary",
          re.search(r"info\] documents \d+/\d+ +questions \d+/\d+ +\d+ tok/s +ETA", first.stderr) is not None and
          "batch: 10 documents" in first.stderr, first.stderr[-600:])
    # On a terminal: a bar redrawn in place (where the machine has pseudo-terminals at all).
    try:
        master, slave = pty.openpty()
    except OSError as e:
        master = None
        print("skip progress bar check: no pseudo-terminal here (%s)" % e)
    if master is not None:
        tty_progress(job, work, master, slave)
    # The shipped job files parse (status reads a job without running it).
    for shipped in ("reference.yaml", "licenses.yaml"):
        st = run("status", os.path.join(DATA, "..", "..", "configs", "jobs", shipped))
        check("configs/jobs/%s is a valid job file" % shipped, st.returncode == 0, st.stderr[-500:])
    # A bad key or type stops before any work.
    for name, text in [("unknown key", "modle: x\n"), ("bad type", ""), ("bad setting", "")]:
        bad_job = os.path.join(work, "bad-%s.yaml" % name.replace(" ", "-"))
        with open(bad_job, "w") as f:
            body = open(job).read().replace("output: out/answers.jsonl", "output: never/answers.jsonl")
            if name == "bad setting":
                body = body.replace("recall.budget: 96", "recall.budgte: 96")
            if name == "bad type":
                body = body.replace("concurrency: 2", "concurrency: many")
            f.write(body + text)
        r = run("run", bad_job)
        check("%s in the job file: a clear error before any work" % name, r.returncode == 1 and "error" in r.stderr and
              not os.path.exists(os.path.join(work, "never")), r.stderr[-500:])


def kill_during(job, seconds, expect_in_log=None):
    p = subprocess.Popen([ILRE, "batch", "run", job], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(seconds)
    p.send_signal(signal.SIGKILL)
    p.wait()


def group_resume(work):
    # Large enough documents that a kill lands inside an ingest, and several questions each.
    # Documents of about three 256 KiB ingest slices each, so kills land between and inside slices.
    make_docs(work, 3, size=120000)
    fast = SETTINGS.replace("store.segment_tokens: 256", "store.segment_tokens: 4096")
    job = write_job(work, '  - glob: "d*.txt"\n', "concurrency: 1\n", settings=fast)
    reference = os.path.join(work, "ref")
    os.makedirs(reference)
    for f in os.listdir(work):
        if f.endswith(".txt"):
            shutil.copy(os.path.join(work, f), reference)
    ref_job = write_job(reference, '  - glob: "d*.txt"\n', "concurrency: 1\n", settings=fast)
    t0 = time.time()
    r = run("run", ref_job)
    took = time.time() - t0
    _, ref_lines = lines_of(os.path.join(reference, "out", "answers.jsonl"))
    check("uninterrupted reference run", r.returncode == 0 and len(ref_lines) == 9, r.stderr[-500:])
    out = os.path.join(work, "out", "answers.jsonl")
    resumed_ingest = False
    # Kill points spread over the whole run, as measured on this machine just now.
    for i, delay in enumerate([took * f for f in (0.15, 0.35, 0.55, 0.75, 0.92)]):
        kill_during(job, delay)
        if os.path.exists(out):
            with open(out, "rb") as f:
                data = f.read()
            # A torn line is allowed only at the very end; the rerun cuts it.
            body = data[: data.rfind(b"\n") + 1]
            try:
                [json.loads(l) for l in body.decode().splitlines() if l.strip()]
                ok = True
            except ValueError:
                ok = False
            check("after kill -9 #%d (%.1f s): every complete line is JSON" % (i + 1, delay), ok)
        r = subprocess.run([ILRE, "batch", "run", job, "--log-level", "info"], capture_output=True, text=True, timeout=300)
        resumed_ingest = resumed_ingest or "resuming its ingest at byte" in r.stderr
        data, lines = lines_of(out)
        keys = [(l["document"], l["question"]) for l in lines]
        check("rerun #%d: every (document, question) exactly once, no torn line" % (i + 1),
              r.returncode == 0 and len(keys) == 9 and len(set(keys)) == 9 and data.endswith(b"\n"), (r.returncode, keys, r.stderr[-500:]))
        check("rerun #%d: the answers equal the uninterrupted run's" % (i + 1),
              sorted(map(stable, lines)) == sorted(map(stable, ref_lines)),
              set(map(stable, lines)) ^ set(map(stable, ref_lines)))
        m = re.search(r"(\d+) answered now, (\d+) done before", r.stderr)
        answered, done_before = (int(m.group(1)), int(m.group(2))) if m else (-1, -1)
        check("rerun #%d: finished work is not redone (%d lines were done, %d answered now)" % (i + 1, done_before, answered),
              answered + done_before == 9 and answered == 9 - len([1 for _ in range(done_before)]), r.stderr[-500:])
        # Start again from nothing for the next kill point.
        shutil.rmtree(os.path.join(work, "out"))
    # And once exactly inside a document's ingest: after its first slice is committed, before it is done.
    p = subprocess.Popen([ILRE, "batch", "run", job], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = os.path.join(work, "out", "stores", "d00.txt", "manifest.json")
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None:
        try:
            with open(manifest) as f:
                if json.load(f)["notes"].get("document_bytes", 0) > 0:
                    break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait()
    r = subprocess.run([ILRE, "batch", "run", job, "--log-level", "info"], capture_output=True, text=True, timeout=300)
    _, lines = lines_of(out)
    resumed_ingest = resumed_ingest or "resuming its ingest at byte" in r.stderr
    check("a half-ingested document resumes from its store's resumable state", resumed_ingest, r.stderr[:1500])
    check("... and gives the answers of the uninterrupted run", sorted(map(stable, lines)) == sorted(map(stable, ref_lines)))


def group_shard(work):
    make_docs(work, 7)
    job = write_job(work, '  - glob: "d*.txt"\n', "concurrency: 2\n")
    r = run("run", job)
    _, whole = lines_of(os.path.join(work, "out", "answers.jsonl"))
    shards = []
    procs = []
    for i in range(3):
        out = "out%d/answers.jsonl" % i
        sj = write_job(work, '  - glob: "d*.txt"\n', "concurrency: 1\n", output=out)
        os.rename(sj, os.path.join(work, "job%d.yaml" % i))
        procs.append(subprocess.Popen([ILRE, "batch", "run", os.path.join(work, "job%d.yaml" % i), "--shard", "%d/3" % i],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        shards.append(os.path.join(work, out))
    codes = [p.wait(300) for p in procs]
    counts = [len(lines_of(s)[1]) for s in shards]
    check("3 shard processes ran together (lines per shard %s)" % counts, codes == [0, 0, 0] and sum(counts) == len(whole) and
          all(c > 0 for c in counts), codes)
    merged = os.path.join(work, "merged.jsonl")
    r = run("merge", "--output", merged, *shards)
    _, m = lines_of(merged)
    check("merged shards equal the unsharded run", r.returncode == 0 and sorted(map(stable, m)) == sorted(map(stable, whole)),
          set(map(stable, m)) ^ set(map(stable, whole)))
    r = run("merge", "--output", merged + "2", *shards, shards[0])
    check("merge keeps every result once", len(lines_of(merged + "2")[1]) == len(whole))
    r = run("run", job, "--shard", "3/3")
    check("a bad --shard is refused", r.returncode != 0 and "--shard" in r.stderr, r.stderr)



def group_openai(work):
    inp = os.path.join(work, "requests.jsonl")
    long_prompt = words(3000, 5) + "\n\nWho lived in the big red house?"
    reqs = [{"custom_id": "short", "method": "POST", "url": "/v1/chat/completions",
             "body": {"model": "x", "messages": [{"role": "user", "content": "Once upon a time"}], "max_tokens": 12, "temperature": 0}},
            {"custom_id": "long", "method": "POST", "url": "/v1/chat/completions",
             "body": {"model": "x", "messages": [{"role": "user", "content": long_prompt}], "temperature": 0}},
            {"custom_id": "legacy", "method": "POST", "url": "/v1/completions", "body": {"prompt": "Lily went", "max_tokens": 6}},
            {"custom_id": "badbody", "method": "POST", "url": "/v1/chat/completions", "body": {"messages": "nope"}},
            {"custom_id": "badurl", "method": "POST", "url": "/v1/embeddings", "body": {}}]
    with open(inp, "w") as f:
        for r in reqs:
            f.write(json.dumps(r) + "\n")
        f.write("{torn\n")
    out = os.path.join(work, "results.jsonl")
    settings = ["--model", MODEL, "--set", "prefill.chunk=64", "--set", "prefill.window=128", "--set", "prefill.sink=8",
                "--set", "decode.max_tokens=8", "--set", "recall.budget=96"]
    r = run("run", "--input", inp, "--output", out, *settings)
    _, lines = lines_of(out)
    by = {l["custom_id"]: l for l in lines}
    check("OpenAI Batch: one output line per input line (%d)" % len(lines), len(lines) == 6 and r.returncode == 3, r.stderr[-800:])
    check("OpenAI Batch: output line shape", by["short"]["response"]["status_code"] == 200 and by["short"]["error"] is None and
          by["short"]["id"].startswith("batch_req_") and by["short"]["response"]["body"]["object"] == "chat.completion", by.get("short"))
    check("OpenAI Batch: a long prompt takes the ILRe path", by["long"]["response"]["body"]["ilre"]["path"] == "ilre", by.get("long"))
    check("OpenAI Batch: a bad body is answered 400 in the body", by["badbody"]["response"]["status_code"] == 400)
    check("OpenAI Batch: a bad url or line is an error naming the input",
          by["badurl"]["error"]["code"] == "invalid_url" and any(k.endswith(":6") and by[k]["error"] for k in by), by)
    # The body is what the daemon answers to the same request.
    port = free_port()
    d = subprocess.Popen([ILRE, "serve", "--port", str(port), "--data-dir", os.path.join(work, "dd"), *settings],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen("http://127.0.0.1:%d/health" % port, timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        same = True
        for cid in ("short", "long", "legacy"):
            req = next(r for r in reqs if r["custom_id"] == cid)
            q = urllib.request.Request("http://127.0.0.1:%d%s" % (port, req["url"]), data=json.dumps(req["body"]).encode(), method="POST")
            served = json.loads(urllib.request.urlopen(q, timeout=60).read())
            mine = by[cid]["response"]["body"]
            strip = lambda b: {k: v for k, v in b.items() if k not in ("id", "created", "ilre")}
            same = same and strip(served) == strip(mine) and served["ilre"].get("path") == mine["ilre"].get("path")
            if not same:
                check("daemon vs batch body for %s" % cid, False, (served, mine))
                break
        check("OpenAI Batch bodies equal the daemon's answers to the same requests", same)
    finally:
        d.send_signal(signal.SIGTERM)
        d.wait(30)
    r2 = run("run", "--input", inp, "--output", out, *settings)
    check("OpenAI Batch rerun: nothing redone, nothing duplicated", len(lines_of(out)[1]) == 6 and " 0 answered now" in r2.stderr, r2.stderr[-500:])


if __name__ == "__main__":
    e2e.main({"jobs": group_jobs, "resume": group_resume, "shard": group_shard, "openai": group_openai}, GROUP, "ilre-batch-test-")
