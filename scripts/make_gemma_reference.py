#!/usr/bin/env python3
"""Records llama.cpp's outputs on Gemma 3 270M as the ground truth for ilre's parity test.

Tooling only: ilre's tests read the JSON this writes and never need Python or llama.cpp.

    python3 -m venv /opt/refvenv && /opt/refvenv/bin/pip install llama-cpp-python numpy
    /opt/refvenv/bin/python scripts/make_gemma_reference.py \
        --model models/gemma-3-270m-q4_k_m.gguf --out tests/data/gemma3-270m-reference.json

For every prompt it stores the token ids (BOS added), the 20 largest logits at every position (ids and
values) and a 32-token greedy continuation (argmax, lowest id on ties, not stopped at end-of-turn).
llama.cpp runs with its defaults for a CPU user: F16 KV cache, no flash attention, batch 512.

llama.cpp's result depends on how the prompt is split into batches (its kernels round differently for
different batch shapes; on Gemma 3 the top logit moves by up to ~1.0). So the prompt is also run one token
at a time, and the logits of that run at the same ids ("top_logits_seq") and its greedy continuation
("greedy_seq") are stored: the spread between the two runs is llama.cpp's own numerical noise, the yardstick
ilre's parity test uses.
"""
import argparse
import hashlib
import json
import os
import sys

import numpy as np
import llama_cpp

TOP_K = 20
GREEDY = 32


def long_prompt() -> str:
    # Public-domain style prose written for this test (no external text), long enough for > 2,000 tokens and
    # varied enough that attention at long range matters: every paragraph refers back to earlier names.
    names = ["Ada", "Bruno", "Chiara", "Dmitri", "Esther", "Farid", "Greta", "Hiro", "Imani", "Jonas"]
    towns = ["Lisbon", "Tromsø", "Kraków", "Valparaíso", "Nagoya", "Tallinn", "Quito", "Dakar", "Perth", "Bergen"]
    crafts = ["clocks", "violins", "maps", "boats", "lanterns", "looms", "telescopes", "bridges", "gardens", "kites"]
    parts = []
    for i in range(60):
        a, b = names[i % 10], names[(i * 3 + 1) % 10]
        t, c = towns[(i * 7) % 10], crafts[(i * 3) % 10]
        parts.append(
            f"In the {i + 1}th winter, {a} travelled from {t} to meet {b}, who had spent {i + 2} years "
            f"building {c}. They argued about whether {c} should be measured by their beauty or by how long "
            f"they last, and {b} wrote the answer, number {i * 17 % 97}, on the wall of the workshop. ")
    parts.append("Looking back at the wall, the number written in the 7th winter was")
    return "".join(parts)


PROMPTS = [
    {"name": "short", "prompt": "The capital of France is", "special": False},
    {"name": "long", "prompt": long_prompt(), "special": False},
    {"name": "multilingual_emoji",
     "prompt": "Bonjour le monde ! 你好，世界。こんにちは、世界。Привет, мир! مرحبا بالعالم. नमस्ते दुनिया। "
               "Emoji: 🌍🚀👩‍💻👍🏽 — café, naïve, Straße. Translate 'good morning' into five languages:",
     "special": False},
    {"name": "code",
     "prompt": "def fibonacci(n: int) -> int:\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    if n < 2:\n"
               "        return n\n\tresult = [0, 1]\n    for i in range(2, n + 1):\n",
     "special": False},
    {"name": "chat",
     "prompt": "<start_of_turn>user\nWrite one sentence about the sea.<end_of_turn>\n<start_of_turn>model\n",
     "special": True},
    {"name": "numbers_whitespace",
     "prompt": "  Totals:\t12,345.67 + 0.001 = 12345.671\n\n\n    3.14159 2.71828   1e-10 -42 0x1F\nNext:",
     "special": False},
]


def greedy_from(llm, last) -> list:
    out = []
    for _ in range(GREEDY):
        nxt = int(np.argmax(last))
        out.append(nxt)
        llm.eval([nxt])
        last = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
    return out


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    llm = llama_cpp.Llama(model_path=args.model, n_ctx=4096, n_batch=512, n_ubatch=512, n_threads=args.threads,
                          logits_all=True, flash_attn=False, verbose=False)
    cases = []
    for p in PROMPTS:
        tokens = llm.tokenize(p["prompt"].encode("utf-8"), add_bos=True, special=p["special"])
        llm.reset()
        llm.eval(tokens)
        logits = np.array(llm.scores[: len(tokens)], dtype=np.float32)
        top_ids = np.argsort(-logits, axis=1, kind="stable")[:, :TOP_K]
        top_vals = np.take_along_axis(logits, top_ids, axis=1)
        greedy = greedy_from(llm, logits[-1])
        llm.reset()
        for t in tokens:
            llm.eval([t])
        seq = np.array(llm.scores[: len(tokens)], dtype=np.float32)
        seq_vals = np.take_along_axis(seq, top_ids, axis=1)
        greedy_seq = greedy_from(llm, seq[-1])
        cases.append({
            "name": p["name"],
            "prompt": p["prompt"],
            "parse_special": p["special"],
            "tokens": [int(t) for t in tokens],
            "top_ids": top_ids.astype(int).tolist(),
            "top_logits": np.round(top_vals.astype(np.float64), 5).tolist(),
            "top_logits_seq": np.round(seq_vals.astype(np.float64), 5).tolist(),
            "greedy": greedy,
            "greedy_seq": greedy_seq,
            "greedy_text": llm.detokenize(greedy).decode("utf-8", errors="replace"),
        })
        spread = float(np.abs(top_vals - seq_vals).max())
        print(f"{p['name']}: {len(tokens)} tokens, batch-vs-sequential spread {spread:.4f}, "
              f"greedy equal: {greedy == greedy_seq}, greedy {cases[-1]['greedy_text']!r}", file=sys.stderr)

    doc = {
        "model": os.path.basename(args.model),
        "model_sha256": sha256(args.model),
        "made_with": f"llama-cpp-python {llama_cpp.__version__} (bundled llama.cpp), CPU, "
                     f"{args.threads} threads, n_batch 512, F16 KV cache, flash_attn off",
        "command": "scripts/make_gemma_reference.py --model " + args.model + " --out " + args.out,
        "top_k": TOP_K,
        "cases": cases,
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, separators=(",", ":"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
