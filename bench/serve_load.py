#!/usr/bin/env python3
"""Load test of `ilre serve` on this machine (tooling only: Python 3 stdlib, never the engine path).

Starts one daemon (and stops it), then for each K in --ks runs K concurrent clients over a bounded list of
operations: "ingest" (create a document, append a --tokens document in --parts parts, the last with
?close=true) and "ask" (the needle question on an already-ingested document; right answers are counted).
Reports per K the ask latency p50/p99 and ttft p50, the ingest tokens/s aggregated over every append in the
window against the single-process CLI ingest (`ilre ingest --json`) of the same document measured in the
same run, the daemon's peak RSS (/proc/PID/status VmRSS sampled every 50 ms), errors (non-2xx other than
503) and busy answers (503 + Retry-After, retried after the header's delay). Then a short-chat throughput
(N chat completions, max_tokens 64, one at a time) against llama-cpp-python's server on the same GGUF and
thread count when it can be started, as a ratio.

--mode memory instead measures the daemon's constant memory: one document, a --memory-tokens document sent
in --memory-slices appends; peak RSS during the first vs the last append and RSS at rest after each.

  python3 bench/serve_load.py --model models/gemma-3-270m-q4_k_m.gguf --ops 1:4,4:8,16:16 --out-json /tmp/load.json
  python3 bench/serve_load.py --mode memory --memory-tokens 1048576 --memory-slices 16 --out-json /tmp/mem.json

Every request goes to 127.0.0.1 only; every loop is bounded in count and time.
"""
import argparse
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import cpu_info, log, machine_busy_seconds, proc_cpu_seconds, rss_kb, wait_quiet  # noqa: E402
NEEDLE_KEY = "4817293"
NEEDLE = "The pass key for the blue vault is " + NEEDLE_KEY + "."
QUESTION = "What is the pass key for the blue vault?"
CHAT_PROMPT = "Write a short story about a lighthouse keeper and a storm."


# ------------------------------------------------------------------------------------------- helpers

def wait_for_file(path, seconds=120):
    """The binaries may be briefly missing while another engineer rebuilds: wait, do not build."""
    deadline = time.time() + seconds
    while not os.path.exists(path):
        if time.time() > deadline:
            raise SystemExit(f"{path} is missing (waited {seconds} s)")
        log(f"waiting for {path} ...")
        time.sleep(5)


def percentile(values, p):
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


class CpuWindow:
    """CPU seconds used by the daemon and by everything else on the machine over a window (a disturbance check)."""

    def __init__(self, pid):
        self.pid = pid
        self.t0 = time.time()
        self.d0 = proc_cpu_seconds(pid) or 0.0
        self.m0 = machine_busy_seconds()

    def stop(self):
        wall = time.time() - self.t0
        d = (proc_cpu_seconds(self.pid) or 0.0) - self.d0
        m = machine_busy_seconds() - self.m0
        return {"wall_s": round(wall, 2), "daemon_cpu_s": round(d, 2), "other_cpu_s": round(max(0.0, m - d), 2),
                "loadavg_1m_end": round(os.getloadavg()[0], 2)}


class RssSampler(threading.Thread):
    def __init__(self, pid, period=0.05):
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.samples = []  # (time, kB)
        self.lock = threading.Lock()
        self.stop_event = threading.Event()

    def run(self):
        while not self.stop_event.is_set():
            v = rss_kb(self.pid)
            if v is not None:
                with self.lock:
                    self.samples.append((time.time(), v))
            self.stop_event.wait(self.period)

    def peak(self, t0, t1):
        with self.lock:
            vals = [kb for t, kb in self.samples if t0 <= t <= t1]
        return max(vals) if vals else None

    def mean(self, t0, t1):
        with self.lock:
            vals = [kb for t, kb in self.samples if t0 <= t <= t1]
        return statistics.mean(vals) if vals else None


def mb(kb):
    return None if kb is None else round(kb / 1024.0, 1)


def split_utf8(data, parts):
    """`parts` slices of about equal size, never cutting a UTF-8 character (the stream would take any cut)."""
    cuts = [0]
    for i in range(1, parts):
        c = len(data) * i // parts
        while c < len(data) and (data[c] & 0xC0) == 0x80:
            c += 1
        cuts.append(c)
    cuts.append(len(data))
    return [data[cuts[i]:cuts[i + 1]] for i in range(parts)]


# -------------------------------------------------------------------------------------------- client

class Client:
    """One HTTP request per connection to 127.0.0.1:port; 503 is retried after Retry-After (bounded)."""

    def __init__(self, port, stats, timeout=3600.0, max_busy_retries=2000, busy_deadline=1800.0):
        self.port, self.stats, self.timeout = port, stats, timeout
        self.max_busy_retries, self.busy_deadline = max_busy_retries, busy_deadline

    def once(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            data = r.read()
            return r.status, dict(r.getheaders()), data
        finally:
            conn.close()

    def request(self, method, path, body=None, headers=None, kind="other"):
        """(status, headers, body, seconds of the last attempt, seconds since the first attempt, busy count)."""
        t_first = time.time()
        busy = 0
        while True:
            t0 = time.time()
            try:
                status, hdrs, data = self.once(method, path, body, headers)
            except (OSError, http.client.HTTPException) as e:
                self.stats.error(kind, method, path, None, repr(e))
                return None, {}, b"", time.time() - t0, time.time() - t_first, busy
            t1 = time.time()
            if status == 503:
                busy += 1
                self.stats.busy(kind)
                if busy >= self.max_busy_retries or t1 - t_first > self.busy_deadline:
                    self.stats.error(kind, method, path, status, "gave up after %d busy answers" % busy)
                    return status, hdrs, data, t1 - t0, t1 - t_first, busy
                try:
                    delay = float(hdrs.get("Retry-After", "1"))
                except ValueError:
                    delay = 1.0
                time.sleep(max(0.05, delay))
                continue
            if not 200 <= status < 300:
                self.stats.error(kind, method, path, status, data[:400].decode("utf-8", "replace"))
            return status, hdrs, data, t1 - t0, t1 - t_first, busy


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.errors = []
        self.busy_by_kind = {}

    def error(self, kind, method, path, status, body):
        with self.lock:
            self.errors.append({"kind": kind, "request": f"{method} {path}", "status": status, "body": body,
                                "at": time.time()})
        log(f"ERROR {kind}: {method} {path} -> {status}: {body[:300]}")

    def busy(self, kind):
        with self.lock:
            self.busy_by_kind[kind] = self.busy_by_kind.get(kind, 0) + 1


# -------------------------------------------------------------------------------------------- daemon

class Daemon:
    def __init__(self, ilre, model, data_dir, log_path, parallel=None, sets=(), extra=()):
        wait_for_file(ilre)
        shutil.rmtree(data_dir, ignore_errors=True)
        cmd = [ilre, "serve", "--model", model, "--port", "0", "--data-dir", data_dir]
        if parallel:
            cmd += ["--parallel", str(parallel)]
        for s in sets:
            cmd += ["--set", s]
        cmd += list(extra)
        self.cmd = cmd
        self.log_path = log_path
        self.logf = open(log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.logf, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        self.port = None
        deadline = time.time() + 120
        while self.port is None:
            if self.proc.poll() is not None:
                raise SystemExit(f"ilre serve exited with {self.proc.returncode}; see {log_path}")
            if time.time() > deadline:
                self.stop()
                raise SystemExit(f"ilre serve did not say where it listens; see {log_path}")
            with open(log_path) as f:
                m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", f.read())
            if m:
                self.port = int(m.group(1))
            else:
                time.sleep(0.05)
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline or self.proc.poll() is not None:
                self.stop()
                raise SystemExit(f"ilre serve never became ready; see {log_path}")
            time.sleep(0.1)

    def metrics(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request("GET", "/metrics")
        return conn.getresponse().read().decode()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()
        return self.proc.returncode


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


# ------------------------------------------------------------------------------------------ workload

def make_document(make_doc, model, tokens, out, needle=True):
    wait_for_file(make_doc)
    if os.path.exists(out) and os.path.getsize(out) > 0:
        return
    cmd = [make_doc, f"--model={model}", f"--tokens={tokens}", f"--out={out}"]
    if needle:
        cmd.append(f"--needle=0.6:{NEEDLE}")
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    log(r.stdout.strip())


def cli_ingest(ilre, model, doc, store, sets=()):
    wait_for_file(ilre)
    shutil.rmtree(store, ignore_errors=True)
    cmd = [ilre, "ingest", "--model", model, "--doc", doc, "--store", store, "--json"]
    for s in sets:
        cmd += ["--set", s]
    t0 = time.time()
    m0 = machine_busy_seconds()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.time() - t0
    own = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    other = max(0.0, machine_busy_seconds() - m0 - own)
    j = json.loads(r.stdout)
    shutil.rmtree(store, ignore_errors=True)
    return {"command": " ".join(cmd), "tokens": j.get("total_tokens"), "tokens_per_second": j.get("tokens_per_second"),
            "peak_rss_mb": j.get("peak_rss_mb"), "wall_s": round(wall, 2), "cpu_s": round(own, 2),
            "other_cores": round(other / wall, 2) if wall > 0 else None}


def op_ingest(client, doc_id, parts, rec):
    """Create `doc_id` and append the parts, the last with ?close=true. Appends go into rec['appends']."""
    st, _, body, dt, _, _ = client.request("POST", "/v1/documents", json.dumps({"id": doc_id}).encode(),
                                           {"Content-Type": "application/json"}, kind="create")
    if st != 201:
        return False
    for i, part in enumerate(parts):
        path = f"/v1/documents/{doc_id}/append" + ("?close=true" if i == len(parts) - 1 else "")
        t0 = time.time()
        st, _, body, dt, e2e, busy = client.request("POST", path, part, {"Content-Type": "text/plain"}, kind="append")
        t1 = time.time()
        if st != 200:
            return False
        j = json.loads(body)
        rec["appends"].append({"doc": doc_id, "part": i, "start": t0, "end": t1, "tokens": j.get("appended_tokens", 0),
                               "server_tokens_per_second": j.get("tokens_per_second"), "busy": busy})
    return True


def op_ask(client, doc_id, max_tokens, budget, rec):
    q = {"question": QUESTION, "max_tokens": max_tokens}
    if budget is not None:
        q["budget"] = budget
    st, _, body, dt, e2e, busy = client.request("POST", f"/v1/documents/{doc_id}/ask", json.dumps(q).encode(),
                                                {"Content-Type": "application/json"}, kind="ask")
    if st != 200:
        return False
    j = json.loads(body)
    tm = j.get("timings_ms", {})
    rec["asks"].append({"doc": doc_id, "latency_ms": dt * 1000, "e2e_ms": e2e * 1000, "busy": busy,
                        "ttft_ms": tm.get("ttft"), "server_total_ms": tm.get("total"),
                        "answer": j.get("answer", ""), "right": NEEDLE_KEY in j.get("answer", "")})
    return True


def union_seconds(intervals):
    total, end = 0.0, None
    for s, e in sorted(intervals):
        if end is None or s > end:
            total += e - s
            end = e
        elif e > end:
            total += e - end
            end = e
    return total


def summarise_appends(appends):
    if not appends:
        return {}
    tokens = sum(a["tokens"] for a in appends)
    busy = union_seconds([(a["start"], a["end"]) for a in appends])
    span = max(a["end"] for a in appends) - min(a["start"] for a in appends)
    return {"appends": len(appends), "tokens": tokens, "busy_s": round(busy, 2), "span_s": round(span, 2),
            "tokens_per_second": tokens / busy if busy > 0 else None,
            "tokens_per_second_span": tokens / span if span > 0 else None}


def run_window(daemon, sampler, stats, k, ops, ready_docs, parts, args, tag):
    """K client threads take operations from a shared list until it is empty (or the window's deadline)."""
    rec = {"appends": [], "asks": [], "ingested_docs": []}
    lock = threading.Lock()
    queue = list(ops)
    errors_before = len(stats.errors)
    busy_before = dict(stats.busy_by_kind)
    deadline = time.time() + args.window_timeout
    counter = [0]

    def worker(ci):
        client = Client(daemon.port, stats)
        while time.time() < deadline:
            with lock:
                if not queue:
                    return
                op = queue.pop(0)
                counter[0] += 1
                n = counter[0]
            if op == "ingest":
                doc_id = f"{tag}-c{ci}-{n}"
                if op_ingest(client, doc_id, parts, rec):
                    with lock:
                        rec["ingested_docs"].append(doc_id)
            else:
                doc_id = ready_docs[n % len(ready_docs)]
                op_ask(client, doc_id, args.ask_max_tokens, args.budget, rec)

    cpu = CpuWindow(daemon.pid)
    t0 = time.time()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(k)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    t1 = time.time()
    cpu_stats = cpu.stop()
    time.sleep(args.rest_seconds)
    rest_rss = rss_kb(daemon.pid)
    asks = rec["asks"]
    lat = [a["latency_ms"] for a in asks]
    e2e = [a["e2e_ms"] for a in asks]
    ttft = [a["ttft_ms"] for a in asks if a["ttft_ms"] is not None and a["ttft_ms"] >= 0]
    busy_after = stats.busy_by_kind
    out = {
        "k": k,
        "ops": {"ingest": ops.count("ingest"), "ask": ops.count("ask"), "left_undone": len(queue)},
        "wall_s": round(t1 - t0, 2),
        "ask": {"n": len(asks), "right": sum(1 for a in asks if a["right"]),
                "latency_p50_ms": percentile(lat, 50), "latency_p99_ms": percentile(lat, 99),
                "e2e_p50_ms": percentile(e2e, 50), "e2e_p99_ms": percentile(e2e, 99),
                "ttft_p50_ms": percentile(ttft, 50), "answers": sorted({a["answer"] for a in asks})},
        "ingest": summarise_appends(rec["appends"]),
        "peak_rss_mb": mb(sampler.peak(t0, t1)),
        "rest_rss_mb": mb(rest_rss),
        "errors": len(stats.errors) - errors_before,
        "busy": {kind: busy_after.get(kind, 0) - busy_before.get(kind, 0) for kind in busy_after
                 if busy_after.get(kind, 0) - busy_before.get(kind, 0)},
        "cpu": cpu_stats,
        "appends": rec["appends"],
        "asks": [{k2: v for k2, v in a.items() if k2 != "answer"} for a in asks],
    }
    return out, rec["ingested_docs"]


# -------------------------------------------------------------------------------------------- chats

def chat_run(port, n, max_tokens, model_field, stats, kind):
    client = Client(port, stats)
    body = {"messages": [{"role": "user", "content": CHAT_PROMPT}], "max_tokens": max_tokens, "temperature": 0.0}
    if model_field:
        body["model"] = model_field
    payload = json.dumps(body).encode()
    # one warm-up request, not counted
    client.request("POST", "/v1/chat/completions", payload, {"Content-Type": "application/json"}, kind=kind)
    tokens, seconds, lats, sample = 0, 0.0, [], ""
    for _ in range(n):
        st, _, data, dt, _, _ = client.request("POST", "/v1/chat/completions", payload,
                                               {"Content-Type": "application/json"}, kind=kind)
        if st != 200:
            continue
        j = json.loads(data)
        tokens += j.get("usage", {}).get("completion_tokens", 0)
        sample = (j.get("choices") or [{}])[0].get("message", {}).get("content", "")
        seconds += dt
        lats.append(dt * 1000)
    return {"n": len(lats), "completion_tokens": tokens, "seconds": round(seconds, 3),
            "tokens_per_second": tokens / seconds if seconds > 0 else None, "latency_p50_ms": percentile(lats, 50),
            "sample_answer": sample[:200]}


def llama_server_chat(args, n, stats):
    env = dict(os.environ)
    if args.llama_pythonpath:
        env["PYTHONPATH"] = args.llama_pythonpath + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if not os.path.exists(args.llama_python):
        return {"ran": False, "reason": f"{args.llama_python} does not exist"}
    probe = subprocess.run([args.llama_python, "-c", "import llama_cpp, llama_cpp.server.app; print(llama_cpp.__version__)"],
                           capture_output=True, text=True, env=env)
    if probe.returncode != 0:
        return {"ran": False, "reason": "import llama_cpp.server failed: " + probe.stderr.strip().splitlines()[-1]}
    port = free_port()
    cmd = [args.llama_python, "-m", "llama_cpp.server", "--model", args.model, "--n_threads", "2",
           "--host", "127.0.0.1", "--port", str(port)]
    chat_format = args.llama_chat_format
    if chat_format == "auto":
        # This GGUF carries no chat template, and llama_cpp.server's fallback (llama-2) makes Gemma stop at once.
        chat_format = "gemma" if "gemma" in os.path.basename(args.model).lower() else ""
    if chat_format:
        cmd += ["--chat_format", chat_format]
    logf = open(os.path.join(args.work, "llama_server.log"), "w")
    proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.time() + 180
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/v1/models")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                return {"ran": False, "reason": f"llama_cpp.server did not start (see {logf.name})"}
            time.sleep(0.2)
        cpu = CpuWindow(proc.pid)
        r = chat_run(port, n, args.chat_max_tokens, None, stats, "llama_chat")
        r["cpu"] = cpu.stop()
        r.update({"ran": True, "version": probe.stdout.strip(), "command": " ".join(cmd)})
        return r
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        logf.close()


# --------------------------------------------------------------------------------------------- modes

def parse_ops(spec, ks):
    table = {}
    for item in spec.split(","):
        if item.strip():
            k, n = item.split(":")
            table[int(k)] = int(n)
    return {k: table.get(k, max(4, k)) for k in ks}


def op_list(n, ingest_share):
    """n operations, ingest ones spread evenly (never none, never all)."""
    n_ingest = min(n - 1, max(1, round(n * ingest_share))) if n > 1 else 1
    ops = ["ask"] * n
    for i in range(n_ingest):
        ops[i * n // n_ingest] = "ingest"
    return ops


def fmt(v, nd=0):
    if v is None:
        return "-"
    return f"{v:,.{nd}f}"


def mode_load(args, result):
    doc = os.path.join(args.work, f"doc-{args.tokens}.txt")
    make_document(args.make_document, args.model, args.tokens, doc)
    data = open(doc, "rb").read()
    parts = split_utf8(data, args.parts)
    log("CLI ingest (before) ...")
    cli_before = cli_ingest(args.ilre, args.model, doc, os.path.join(args.work, "cli-store"), args.set)
    result["cli_ingest_before"] = cli_before
    stats = Stats()
    daemon = Daemon(args.ilre, args.model, os.path.join(args.work, "data"), os.path.join(args.work, "serve.log"),
                    args.parallel, args.set)
    result["daemon_command"] = " ".join(daemon.cmd)
    sampler = RssSampler(daemon.pid)
    sampler.start()
    try:
        time.sleep(0.5)
        result["idle_rss_mb"] = mb(rss_kb(daemon.pid))
        # A seed document for the asks, ingested by one client with nothing else running.
        log("seed ingest (one client) ...")
        seed, ready = run_window(daemon, sampler, stats, 1, ["ingest"], ["none"], parts, args, "seed")
        result["seed"] = seed
        ready = list(ready)
        if not ready:
            raise SystemExit("the seed ingest failed; see " + daemon.log_path)
        ops_per_k = parse_ops(args.ops, args.ks)
        result["windows"] = []
        for k in args.ks:
            ops = op_list(ops_per_k[k], args.ingest_share)
            log(f"K={k}: {ops.count('ingest')} ingest + {ops.count('ask')} ask operations ...")
            w, new_docs = run_window(daemon, sampler, stats, k, ops, list(ready), parts, args, f"k{k}")
            result["windows"].append(w)
            ready += new_docs
        log(f"chat: {args.chat_n} completions ...")
        t0 = time.time()
        cpu = CpuWindow(daemon.pid)
        result["chat_ilre"] = chat_run(daemon.port, args.chat_n, args.chat_max_tokens, None, stats, "chat")
        result["chat_ilre"]["cpu"] = cpu.stop()
        result["chat_ilre"]["peak_rss_mb"] = mb(sampler.peak(t0, time.time()))
        metrics = daemon.metrics()
        result["metrics_requests"] = [l for l in metrics.splitlines() if l.startswith("ilre_http_requests_total")]
        m = re.search(r"^ilre_process_resident_memory_bytes (\S+)", metrics, re.M)
        result["metrics_rss_mb_end"] = round(float(m.group(1)) / 2**20, 1) if m else None
        result["peak_rss_mb_overall"] = mb(sampler.peak(0, time.time()))
    finally:
        sampler.stop_event.set()
        result["daemon_exit_code"] = daemon.stop()
    log("CLI ingest (after) ...")
    result["cli_ingest_after"] = cli_ingest(args.ilre, args.model, doc, os.path.join(args.work, "cli-store"), args.set)
    if args.no_llama:
        result["chat_llama"] = {"ran": False, "reason": "--no-llama"}
    else:
        log("llama_cpp.server chat ...")
        result["chat_llama"] = llama_server_chat(args, args.chat_n, stats)
    result["errors"] = stats.errors
    result["busy_total"] = stats.busy_by_kind

    result["chat_max_tokens"] = args.chat_max_tokens
    return load_table(result)


def cli_reference(result):
    """The faster of the two CLI ingests (before and after the daemon): the ratio never flatters the daemon."""
    runs = [result[k] for k in ("cli_ingest_before", "cli_ingest_after") if result.get(k)]
    return max(r["tokens_per_second"] for r in runs)


def chat_lines(result):
    ci, ll = result["chat_ilre"], result["chat_llama"]
    out = (f"short chat (n={ci['n']}, max_tokens {result.get('chat_max_tokens', 64)}, one at a time): ilre "
           f"{fmt(ci['tokens_per_second'], 1)} tok/s ({ci['completion_tokens']} tokens, p50 {fmt(ci['latency_p50_ms'])} ms, "
           f"other cores {ci['cpu']['other_cpu_s'] / max(ci['cpu']['wall_s'], 1e-9):.2f})")
    if ll.get("ran"):
        ratio = ci["tokens_per_second"] / ll["tokens_per_second"] if ll.get("tokens_per_second") else None
        result["chat_ratio_ilre_vs_llama"] = ratio
        out += (f"; llama_cpp.server {ll['version']} {fmt(ll['tokens_per_second'], 1)} tok/s ({ll['completion_tokens']} tokens, "
                f"p50 {fmt(ll['latency_p50_ms'])} ms, other cores {ll['cpu']['other_cpu_s'] / max(ll['cpu']['wall_s'], 1e-9):.2f}); "
                f"ratio {fmt(ratio, 3)}")
    else:
        out += f"; llama_cpp.server could not be run: {ll.get('reason')}"
    return out


def load_table(result):
    cli_rate = cli_reference(result)
    result["cli_tokens_per_second_reference"] = cli_rate
    rows = [("seed (1 ingest)", result["seed"])] + [(f"K={w['k']}", w) for w in result["windows"]]
    hdr = ("window", "ops i/a", "ask p50 ms", "ask p99 ms", "e2e p99 ms", "ttft p50 ms", "right", "ingest tok/s",
           "vs CLI", "peak RSS MB", "RSS after MB", "errors", "busy 503", "other cores")
    lines = ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
    for name, w in rows:
        rate = w["ingest"].get("tokens_per_second")
        w["ingest_vs_cli"] = rate / cli_rate if rate else None
        a = w["ask"]
        lines.append("| " + " | ".join([
            name, f"{w['ops']['ingest']}/{w['ops']['ask']}", fmt(a["latency_p50_ms"]), fmt(a["latency_p99_ms"]),
            fmt(a["e2e_p99_ms"]), fmt(a["ttft_p50_ms"]), f"{a['right']}/{a['n']}" if a["n"] else "-", fmt(rate),
            fmt(w["ingest_vs_cli"], 3), fmt(w["peak_rss_mb"], 1), fmt(w.get("rest_rss_mb"), 1), str(w["errors"]),
            ", ".join(f"{k2} {v}" for k2, v in w["busy"].items()) or "0",
            fmt(w["cpu"]["other_cpu_s"] / w["cpu"]["wall_s"] if w["cpu"]["wall_s"] else None, 2)]) + " |")
    out = "\n".join(lines)
    b, a = result["cli_ingest_before"], result["cli_ingest_after"]
    out += (f"\n\nCLI `ilre ingest` of the same document: {fmt(b['tokens_per_second'])} tok/s before the daemon (other cores "
            f"{b['other_cores']}), {fmt(a['tokens_per_second'])} after (other cores {a['other_cores']}); \"vs CLI\" divides by the "
            f"faster, {fmt(cli_rate)}; CLI peak RSS {b['peak_rss_mb']:.1f} MB")
    out += "\n" + chat_lines(result)
    out += (f"\npeak daemon RSS overall {result['peak_rss_mb_overall']} MB (idle {result['idle_rss_mb']} MB); "
            f"errors {len(result['errors'])}; busy {result['busy_total']}")
    return out


def mode_chat(args, result):
    """Only the short-chat comparison (ilre serve, then llama_cpp.server), for a quiet moment."""
    stats = Stats()
    daemon = Daemon(args.ilre, args.model, os.path.join(args.work, "data-chat"), os.path.join(args.work, "serve-chat.log"),
                    args.parallel, args.set)
    result["daemon_command"] = " ".join(daemon.cmd)
    try:
        cpu = CpuWindow(daemon.pid)
        result["chat_ilre"] = chat_run(daemon.port, args.chat_n, args.chat_max_tokens, None, stats, "chat")
        result["chat_ilre"]["cpu"] = cpu.stop()
    finally:
        result["daemon_exit_code"] = daemon.stop()
    result["chat_llama"] = {"ran": False, "reason": "--no-llama"} if args.no_llama else llama_server_chat(args, args.chat_n, stats)
    result["chat_max_tokens"] = args.chat_max_tokens
    result["errors"] = stats.errors
    return chat_lines(result) + f"\nerrors {len(stats.errors)}"


def mode_memory(args, result):
    doc = os.path.join(args.work, f"doc-{args.memory_tokens}.txt")
    make_document(args.make_document, args.model, args.memory_tokens, doc)
    slices = split_utf8(open(doc, "rb").read(), args.memory_slices)
    stats = Stats()
    daemon = Daemon(args.ilre, args.model, os.path.join(args.work, "data-mem"), os.path.join(args.work, "serve-mem.log"),
                    args.parallel, args.set)
    result["daemon_command"] = " ".join(daemon.cmd)
    sampler = RssSampler(daemon.pid)
    sampler.start()
    rows = []
    try:
        time.sleep(0.5)
        result["idle_rss_mb"] = mb(rss_kb(daemon.pid))
        client = Client(daemon.port, stats)
        st, _, body, _, _, _ = client.request("POST", "/v1/documents", json.dumps({"id": "mem"}).encode(),
                                              {"Content-Type": "application/json"}, kind="create")
        if st != 201:
            raise SystemExit(f"create failed: {st} {body[:300]}")
        for i, part in enumerate(slices):
            t0 = time.time()
            st, _, body, dt, _, _ = client.request("POST", "/v1/documents/mem/append", part,
                                                   {"Content-Type": "text/plain"}, kind="append")
            t1 = time.time()
            if st != 200:
                raise SystemExit(f"append {i} failed: {st} {body[:300]}")
            j = json.loads(body)
            time.sleep(args.rest_seconds)
            t2 = time.time()
            rows.append({"append": i + 1, "tokens": j["tokens"], "appended_tokens": j["appended_tokens"],
                         "tokens_per_second": j["tokens_per_second"], "seconds": round(dt, 2),
                         "peak_rss_mb": mb(sampler.peak(t0, t1)),
                         "rest_rss_mb": mb(sampler.mean(t2 - min(1.0, args.rest_seconds / 2), t2))})
            log(f"append {i + 1}/{len(slices)}: {j['tokens']} tokens, {j['tokens_per_second']:.0f} tok/s, "
                f"peak {rows[-1]['peak_rss_mb']} MB, at rest {rows[-1]['rest_rss_mb']} MB")
        t0 = time.time()
        st, _, body, _, _, _ = client.request("POST", "/v1/documents/mem/close", b"", {"Content-Type": "text/plain"},
                                              kind="close")
        result["close"] = {"status": st, "body": json.loads(body) if st == 200 else body.decode("utf-8", "replace")}
        t0 = time.time()
        st, _, body, dt, _, _ = client.request("POST", "/v1/documents/mem/ask",
                                               json.dumps(dict({"question": QUESTION, "max_tokens": args.ask_max_tokens},
                                                               **({"budget": args.budget} if args.budget is not None else {}))).encode(),
                                               {"Content-Type": "application/json"}, kind="ask")
        if st == 200:
            j = json.loads(body)
            result["ask_1m"] = {"budget": args.budget, "recalled": j.get("recalled", {}).get("tokens"),
                                "latency_ms": dt * 1000, "ttft_ms": j["timings_ms"].get("ttft"), "answer": j["answer"],
                                "right": NEEDLE_KEY in j["answer"], "peak_rss_mb": mb(sampler.peak(t0, time.time()))}
    finally:
        sampler.stop_event.set()
        result["daemon_exit_code"] = daemon.stop()
    result["appends"] = rows
    result["errors"] = stats.errors
    first, last = rows[0], rows[-1]
    result["peak_ratio_last_vs_first"] = last["peak_rss_mb"] / first["peak_rss_mb"]
    result["rest_ratio_last_vs_first"] = last["rest_rss_mb"] / first["rest_rss_mb"]
    lines = ["| append | tokens in the document | tok/s | peak RSS during (MB) | RSS at rest after (MB) |", "|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['append']} | {r['tokens']:,} | {r['tokens_per_second']:,.0f} | {r['peak_rss_mb']:.1f} | {r['rest_rss_mb']:.1f} |")
    out = "\n".join(lines)
    out += (f"\n\npeak RSS last/first append {result['peak_ratio_last_vs_first']:.3f}; RSS at rest last/first "
            f"{result['rest_ratio_last_vs_first']:.3f}; idle before the first append {result['idle_rss_mb']} MB")
    if "ask_1m" in result:
        a = result["ask_1m"]
        out += f"\nask at {last['tokens']:,} tokens: {a['latency_ms']:.0f} ms, right={a['right']}, peak RSS {a['peak_rss_mb']} MB"
    out += f"\nerrors {len(stats.errors)}"
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=("load", "memory", "chat"), default="load")
    ap.add_argument("--report", default=None, help="print the table of a JSON written by an earlier load run, run nothing")
    ap.add_argument("--model", default=os.path.join(ROOT, "models/gemma-3-270m-q4_k_m.gguf"))
    ap.add_argument("--ilre", default=os.path.join(ROOT, "build/cli/ilre"))
    ap.add_argument("--make-document", default=os.path.join(ROOT, "build/bench/make_document"))
    ap.add_argument("--tokens", type=int, default=100000, help="tokens of each ingested document")
    ap.add_argument("--parts", type=int, default=4, help="appends per ingested document")
    ap.add_argument("--ks", default="1,4,16", help="concurrent clients, comma-separated")
    ap.add_argument("--ops", default="1:4,4:8,16:16", help="operations per K, K:N comma-separated (default max(4, K))")
    ap.add_argument("--ingest-share", type=float, default=0.25, help="share of the operations that ingest a document")
    ap.add_argument("--ask-max-tokens", type=int, default=16)
    ap.add_argument("--budget", type=int, default=None, help="recall budget of each ask (default: the daemon's)")
    ap.add_argument("--chat-n", type=int, default=16)
    ap.add_argument("--chat-max-tokens", type=int, default=64)
    ap.add_argument("--parallel", type=int, default=None, help="the daemon's --parallel (default: its own)")
    ap.add_argument("--set", action="append", default=[], help="passed to ilre serve and ilre ingest as --set")
    ap.add_argument("--window-timeout", type=float, default=1200.0, help="seconds after which a window takes no new operation")
    ap.add_argument("--llama-python", default="/opt/refvenv/bin/python")
    ap.add_argument("--llama-pythonpath", default=os.environ.get("LLAMA_PYTHONPATH", ""),
                    help="extra PYTHONPATH for llama_cpp.server's dependencies (uvicorn, fastapi, ...)")
    ap.add_argument("--llama-chat-format", default="auto", help="llama_cpp.server --chat_format (auto: gemma for Gemma)")
    ap.add_argument("--no-llama", action="store_true")
    ap.add_argument("--memory-tokens", type=int, default=1048576)
    ap.add_argument("--memory-slices", type=int, default=16)
    ap.add_argument("--rest-seconds", type=float, default=2.0, help="pause after each append (memory mode) or window (load mode) before reading RSS at rest")
    ap.add_argument("--wait-quiet", type=float, default=0.0,
                    help="seconds to wait at most, before starting, for the machine to be idle (other work < 0.25 cores)")
    ap.add_argument("--work", default="/tmp/ilre-serve-load")
    ap.add_argument("--keep", action="store_true", help="keep the data directories")
    ap.add_argument("--out-json", default=None)
    args = ap.parse_args()
    if args.report:
        result = json.load(open(args.report))
        print(load_table(result))
        return 0
    args.ks = [int(x) for x in args.ks.split(",") if x.strip()]
    args.model = os.path.abspath(args.model)
    os.makedirs(args.work, exist_ok=True)
    result = {"argv": sys.argv, "mode": args.mode, "model": args.model, "cpu": cpu_info(),
              "loadavg_start": os.getloadavg(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if args.wait_quiet > 0:
        result["cores_busy_before_start"] = wait_quiet(args.wait_quiet)
    t0 = time.time()
    table = {"load": mode_load, "memory": mode_memory, "chat": mode_chat}[args.mode](args, result)
    result["wall_s"] = round(time.time() - t0, 1)
    result["loadavg_end"] = os.getloadavg()
    c = result["cpu"]
    header = (f"CPU: {c['model_name']}, {c['nproc']} cores, avx2={'yes' if c['avx2'] else 'no'} "
              f"avx512f={'yes' if c['avx512f'] else 'no'} avx512_vnni={'yes' if c['avx512_vnni'] else 'no'}; "
              f"model {os.path.basename(args.model)}; {result['wall_s']} s")
    print(header)
    print(table)
    if args.out_json:
        with open(args.out_json, "w") as f:
            json.dump(result, f, indent=1)
    if not args.keep:
        for d in ("data", "data-mem"):
            shutil.rmtree(os.path.join(args.work, d), ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
