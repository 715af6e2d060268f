"""What the load benchmarks ask of the machine they run on (tooling only: Python 3 stdlib): its CPU, how
busy it is, a wait for quiet, and a process's RSS and CPU time from /proc."""
import os
import subprocess
import sys
import time

# The ISA flags worth reporting beside a figure: they decide which kernels ilre and llama.cpp run.
REPORTED_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def cpu_info():
    """lscpu's model name, family, model and the reported flags (as a list and one boolean per flag)."""
    out = {"model_name": "?", "cpu_family": None, "model": None, "flags": [], "nproc": os.cpu_count()}
    out.update({f: False for f in REPORTED_FLAGS})
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return out
    for line in text.splitlines():
        key, _, val = line.partition(":")
        val = val.strip()
        if key == "Model name":
            out["model_name"] = val
        elif key == "CPU family":
            out["cpu_family"] = val
        elif key == "Model":
            out["model"] = val
        elif key == "Flags":
            flags = set(val.split())
            out["flags"] = [f for f in REPORTED_FLAGS if f in flags]
            out.update({f: f in flags for f in REPORTED_FLAGS})
    return out


def machine_busy_seconds():
    """CPU seconds every process of the machine has used since boot (all of /proc/stat's first line but idle)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return (sum(v[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def wait_quiet(limit_s, cores=0.25, probe_s=3.0):
    """Waits (at most limit_s) until the machine's other work uses under `cores` cores over probe_s seconds."""
    deadline = time.time() + limit_s
    while True:
        m0 = machine_busy_seconds()
        time.sleep(probe_s)
        used = (machine_busy_seconds() - m0) / probe_s
        if used < cores or time.time() > deadline:
            return round(used, 2)
        log(f"machine busy ({used:.2f} cores in use); waiting ...")


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def proc_cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return None
