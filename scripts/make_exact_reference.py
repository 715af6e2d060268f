#!/usr/bin/env python3
"""Float64 reference forward pass (numpy) for ilre's "exact" numerics mode.

Independent of llama.cpp and of ilre: the weights are dequantised with the `gguf` package and every
operation runs in float64 straight from the architecture's definition (RMSNorm, RoPE normal/NeoX, GQA
causal attention with Gemma 3's sliding window, SwiGLU / tanh-GELU, Gemma's QK-norm, post-norms and scales).
ilre's Numerics::exact must agree with it to ~1e-4: that checks the model maths without llama.cpp's
rounding noise. Tooling only; the C++ tests read the JSON it writes.

    /opt/refvenv/bin/pip install gguf numpy
    /opt/refvenv/bin/python scripts/make_exact_reference.py --model models/gemma-3-270m-q4_k_m.gguf \
        --tokens-from tests/data/gemma3-270m-reference.json --out tests/data/gemma3-270m-exact.json
    /opt/refvenv/bin/python scripts/make_exact_reference.py --model ../shared/models/stories260K-f32.gguf \
        --tokens-from ../shared/golden/stories260K-f32.logits.json --out tests/data/stories260K-exact.json

With --dca-context P the full-attention layers use dual chunk attention (ChunkLlama's maps, chunks cut from
a P-token context: chunk 3P/4, local P/8), written directly per query-key pair rather than as three
merged partial attentions:
    /opt/refvenv/bin/python scripts/make_exact_reference.py --model tests/data/models/stories260K-f32.gguf \
        --random-tokens 400 --dca-context 128 --greedy 0 --out tests/data/stories260K-dca-exact.json
"""
import argparse
import json
import os
import sys

import numpy as np
import gguf
from gguf.quants import dequantize

TOP_K = 20


class Model:
    def __init__(self, path):
        r = gguf.GGUFReader(path)
        self.kv = {k: f.contents() for k, f in r.fields.items() if not k.startswith("tokenizer.ggml.")}
        self.arch = self.kv["general.architecture"]
        a = self.arch
        self.t = {}
        for t in r.tensors:
            w = dequantize(t.data, t.tensor_type).astype(np.float64)
            self.t[t.name] = w.reshape([int(x) for x in reversed(t.shape)]) if len(t.shape) > 1 else w.reshape(-1)
        self.n_embd = self.kv[f"{a}.embedding_length"]
        self.n_layer = self.kv[f"{a}.block_count"]
        self.n_head = self.kv[f"{a}.attention.head_count"]
        self.n_head_kv = self.kv.get(f"{a}.attention.head_count_kv", self.n_head)
        self.head_dim = self.kv.get(f"{a}.attention.key_length", self.n_embd // self.n_head)
        self.eps = self.kv[f"{a}.attention.layer_norm_rms_epsilon"]
        self.base = self.kv.get(f"{a}.rope.freq_base", 10000.0)
        self.window = self.kv.get(f"{a}.attention.sliding_window", 0)
        self.output = self.t.get("output.weight", self.t["token_embd.weight"])
        self.dca_context = 0

    def rms(self, x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + self.eps) * w

    def rope(self, x, pos, base, neox):
        d = self.head_dim
        half = d // 2
        theta = pos[:, None] * base ** (-np.arange(half) * 2.0 / d)[None, :]
        c, s = np.cos(theta)[:, None, :], np.sin(theta)[:, None, :]
        out = x.copy()
        if neox:
            x0, x1 = x[:, :, :half], x[:, :, half:]
            out[:, :, :half], out[:, :, half:] = x0 * c - x1 * s, x0 * s + x1 * c
        else:
            x0, x1 = x[:, :, 0::2], x[:, :, 1::2]
            out[:, :, 0::2], out[:, :, 1::2] = x0 * c - x1 * s, x0 * s + x1 * c
        return out

    def dca_scores(self, q, k, pos, base, neox):
        """Scores [head, n, n] of pre-RoPE q, k under DCA: key j at j mod c; query i at i mod c for keys of
        its own chunk, min(i mod c + c, chunk) for the previous chunk, chunk for older ones."""
        chunk, local = self.dca_context * 3 // 4, self.dca_context // 8
        c = chunk - local
        kr = self.rope(k, pos % c, base, neox)
        qs = [self.rope(q, pos % c, base, neox), self.rope(q, np.minimum(pos % c + c, chunk), base, neox),
              self.rope(q, np.full_like(pos, chunk), base, neox)]
        d = (pos // c)[:, None] - (pos // c)[None, :]
        region = np.where(d <= 0, 0, np.where(d == 1, 1, 2))
        group = self.n_head // self.n_head_kv
        out = []
        for hh in range(self.n_head):
            s = [qq[:, hh] @ kr[:, hh // group].T for qq in qs]
            out.append(np.choose(region, s))
        return out

    def hidden(self, tokens):
        gemma = self.arch == "gemma3"
        n, d = len(tokens), self.head_dim
        pos = np.arange(n, dtype=np.float64)
        x = self.t["token_embd.weight"][tokens] * (np.sqrt(self.n_embd) if gemma else 1.0)
        group = self.n_head // self.n_head_kv
        for il in range(self.n_layer):
            p = f"blk.{il}."
            swa = gemma and self.window > 0 and il % 6 < 5
            h = self.rms(x, self.t[p + "attn_norm.weight"])
            q = (h @ self.t[p + "attn_q.weight"].T).reshape(n, self.n_head, d)
            k = (h @ self.t[p + "attn_k.weight"].T).reshape(n, self.n_head_kv, d)
            v = (h @ self.t[p + "attn_v.weight"].T).reshape(n, self.n_head_kv, d)
            if gemma:
                q = self.rms(q, self.t[p + "attn_q_norm.weight"])
                k = self.rms(k, self.t[p + "attn_k_norm.weight"])
            base = 10000.0 if swa else self.base
            dca = self.dca_scores(q, k, pos, base, gemma) if self.dca_context and not swa else None
            q = self.rope(q, pos, base, neox=gemma)
            k = self.rope(k, pos, base, neox=gemma)
            scale = 1.0 / np.sqrt(d)
            mask = np.triu(np.ones((n, n), bool), 1)
            if swa:
                mask |= (pos[:, None] - pos[None, :]) >= self.window
            o = np.zeros((n, self.n_head, d))
            for hh in range(self.n_head):
                s = (dca[hh] if dca is not None else q[:, hh] @ k[:, hh // group].T) * scale
                s[mask] = -np.inf
                s = np.exp(s - s.max(1, keepdims=True))
                s /= s.sum(1, keepdims=True)
                o[:, hh] = s @ v[:, hh // group]
            a = o.reshape(n, -1) @ self.t[p + "attn_output.weight"].T
            if gemma:
                a = self.rms(a, self.t[p + "post_attention_norm.weight"])
            x = x + a
            h = self.rms(x, self.t[p + "ffn_norm.weight"])
            g = h @ self.t[p + "ffn_gate.weight"].T
            u = h @ self.t[p + "ffn_up.weight"].T
            if gemma:
                act = 0.5 * g * (1 + np.tanh(np.sqrt(2 / np.pi) * g * (1 + 0.044715 * g * g)))
            else:
                act = g / (1 + np.exp(-g))
            f = (act * u) @ self.t[p + "ffn_down.weight"].T
            if gemma:
                f = self.rms(f, self.t[p + "post_ffw_norm.weight"])
            x = x + f
        return self.rms(x, self.t["output_norm.weight"])

    def top_logits(self, tokens):
        h = self.hidden(np.array(tokens))
        ids, vals = [], []
        for r0 in range(0, len(tokens), 64):
            logits = h[r0:r0 + 64] @ self.output.T
            top = np.argsort(-logits, axis=1, kind="stable")[:, :TOP_K]
            ids += top.tolist()
            vals += np.take_along_axis(logits, top, axis=1).tolist()
        return ids, vals, logits[-1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokens-from", help="JSON with cases[].tokens (a llama.cpp reference)")
    ap.add_argument("--random-tokens", type=int, default=0, help="instead: one case of N seeded random token ids")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dca-context", type=int, default=0, help="dual chunk attention with chunks cut from this context")
    ap.add_argument("--out", required=True)
    ap.add_argument("--greedy", type=int, default=8, help="greedy tokens for prompts under 512 tokens")
    args = ap.parse_args()
    m = Model(args.model)
    m.dca_context = args.dca_context
    if args.random_tokens:
        rng = np.random.default_rng(args.seed)
        ids = rng.integers(3, len(m.output), size=args.random_tokens).tolist()
        src = {"cases": [{"name": f"random{args.random_tokens}", "tokens": [1] + ids[1:]}]}
    else:
        src = json.load(open(args.tokens_from, encoding="utf-8"))
    cases = []
    for i, c in enumerate(src["cases"]):
        tokens = list(c["tokens"])
        ids, vals, last = m.top_logits(tokens)
        greedy = []
        if len(tokens) < 512:
            seq = list(tokens)
            for _ in range(args.greedy):
                nxt = int(np.argmax(last))
                greedy.append(nxt)
                seq.append(nxt)
                last = m.hidden(np.array(seq))[-1] @ m.output.T
        cases.append({"name": c.get("name", f"case{i}"), "tokens": tokens, "top_ids": ids,
                      "top_logits": np.round(np.array(vals), 6).tolist(), "greedy": greedy})
        print(f"case {i}: {len(tokens)} tokens", file=sys.stderr)
    doc = {"model": os.path.basename(args.model), "made_with": "scripts/make_exact_reference.py (numpy float64)",
           "top_k": TOP_K, "cases": cases}
    if args.dca_context:
        doc["dca_context"] = args.dca_context
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(doc, f, separators=(",", ":"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
