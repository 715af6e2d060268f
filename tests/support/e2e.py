"""What the end-to-end Python tests share (tests/daemon, tests/batch): checks that record failures,
free loopback ports, a deterministic text of the words stories260K knows, and a main that runs one group
in a scratch folder and sets the exit status."""
import random
import shutil
import socket
import sys
import tempfile
import traceback

failures = []


def check(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else ": " + str(detail)[:2000]), flush=True)
    if not ok:
        failures.append(name)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def words(n, seed):
    rnd = random.Random(seed)
    vocab = ("the cat sat on a mat and ran to the big red house where a little girl named Lily lived with her "
             "mom one day she saw a bird in the sky it was happy and they played all day long").split()
    return " ".join(rnd.choice(vocab) for _ in range(n))


def main(groups, group, prefix):
    work = tempfile.mkdtemp(prefix=prefix)
    try:
        groups[group](work)
    except Exception as e:  # a crash of the test itself is a failure, with its cause
        traceback.print_exc()
        failures.append("exception: %s" % e)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print("%d check(s) failed: %s" % (len(failures), ", ".join(failures)))
        sys.exit(1)
    print("all checks passed")
