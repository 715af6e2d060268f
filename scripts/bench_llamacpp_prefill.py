#!/usr/bin/env python3
"""llama.cpp's prompt-processing speed on the same GGUF, for bench/bench_prefill's comparison.

Needs llama-cpp-python (pip install llama-cpp-python; builds llama.cpp locally -- never part of ilre's run
path). Feeds random token ids (as bench_prefill does) at n_batch 512, n_threads 1 and 2, best of 3 runs.

  python3 scripts/bench_llamacpp_prefill.py models/gemma-3-270m-q4_k_m.gguf [--lengths 512 2048] [--decode 64]
"""
import argparse
import random
import time

import llama_cpp


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--lengths", type=int, nargs="+", default=[512, 2048])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--decode", type=int, default=0,
                    help="also decode this many tokens one at a time after a 1,024-token prompt (bench_prefill --decode)")
    args = ap.parse_args()
    print(f"llama.cpp {llama_cpp.__version__}: prompt processing, n_batch 512")
    print(f"{'tokens':>7} {'thr':>4} {'tok/s':>10}")
    for n in args.lengths:
        for nt in args.threads:
            llm = llama_cpp.Llama(args.model, n_ctx=max(n + 16, 512), n_batch=512, n_ubatch=512, n_threads=nt,
                                  n_threads_batch=nt, verbose=False, logits_all=False)
            rng = random.Random(3)
            tokens = [llm.token_bos()] + [rng.randrange(100, 30000) for _ in range(n - 1)]
            best = 1e30
            for _ in range(args.repeats):
                llm.reset()
                llm._ctx.kv_cache_clear() if hasattr(llm._ctx, "kv_cache_clear") else None
                t0 = time.perf_counter()
                llm.eval(tokens)
                best = min(best, time.perf_counter() - t0)
            print(f"{n:>7} {nt:>4} {n / best:>10.0f}")
            del llm
    if args.decode > 0:
        decode(args)


def decode(args):
    print(f"\ndecode, {args.decode} tokens one at a time after 1024 prompt tokens")
    print(f"{'thr':>4} {'tok/s':>10}")
    for nt in args.threads:
        llm = llama_cpp.Llama(args.model, n_ctx=2048, n_batch=512, n_ubatch=512, n_threads=nt, n_threads_batch=nt,
                              verbose=False, logits_all=False)
        rng = random.Random(3)
        prompt = [llm.token_bos()] + [rng.randrange(100, 30000) for _ in range(1023)]
        nxt = [rng.randrange(100, 30000) for _ in range(args.decode)]
        best = 1e30
        for _ in range(args.repeats):
            llm.reset()
            llm._ctx.kv_cache_clear() if hasattr(llm._ctx, "kv_cache_clear") else None
            llm.eval(prompt)
            t0 = time.perf_counter()
            for t in nxt:
                llm.eval([t])
            best = min(best, time.perf_counter() - t0)
        print(f"{nt:>4} {args.decode / best:>10.1f}")
        del llm


if __name__ == "__main__":
    main()
