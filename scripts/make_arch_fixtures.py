#!/usr/bin/env python3
"""Tiny random-weight GGUFs of the architectures users download (qwen2, qwen3, llama with Llama 3 rope scaling,
phi3) and llama.cpp's logits for fixed token ids on them: the parity fixtures of tests/model/arch_parity_test.cpp.

No such model can be downloaded here, so the weights are random (seeded) and F32; the shapes exercise grouped
query attention (4 query heads on 2 K/V heads), Q/K/V biases (qwen2), per-head Q/K RMSNorm with a head width
other than n_embd / n_head (qwen3), tied and separate output matrices, rope_freqs factors (llama3), and phi3's
fused attn_qkv and gate/up tensors with LongRoPE factors and attention factor: `phi3` is a 128k-style model
(original_context_length 128 below a context of 512, so llama.cpp run at n_ctx 512 takes the long factors) with
a sliding_window key llama.cpp ignores for phi3; `phi3split` has separate attn_q/k/v, a tied output and an
original context equal to the context, so the short factors are taken.
The vocabulary is stories260K's (512 SentencePiece pieces): the architecture does not depend on it and the
references are taken on token ids. References: llama-cpp-python, one thread, one batch, F32 K/V cache, no
flash attention, every position's logits. Tooling only (the `gguf` writer and llama.cpp run here, never in
the engine):

    /opt/refvenv/bin/pip install gguf
    /opt/refvenv/bin/python scripts/make_arch_fixtures.py --vocab tests/data/models/stories260K-f32.gguf \\
        --out tests/data/arch [--only phi3,phi3split]

--only regenerates just the named fixtures: the others stay byte-identical to the checked-in files (the gguf
writer's version or numpy's could change their bytes).
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import gguf
import llama_cpp

CASES = [[1], [1, 403, 407, 261, 378, 432, 383], list(range(1, 41)) + [7, 300, 511, 2, 9]]


def vocab_fields(path):
    r = gguf.GGUFReader(path)

    def strings(key):
        f = r.fields[key]
        return [bytes(f.parts[i]).decode("utf-8") for i in f.data]

    def values(key):
        f = r.fields[key]
        return [f.parts[i][0].item() for i in f.data]

    return {"tokens": strings("tokenizer.ggml.tokens"), "scores": values("tokenizer.ggml.scores"),
            "types": values("tokenizer.ggml.token_type")}


def write_model(path, arch, spec, vocab, rng):
    n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff = (spec[k] for k in
                                                         ("n_embd", "n_layer", "n_head", "n_head_kv", "head_dim", "n_ff"))
    n_vocab = len(vocab["tokens"])
    w = gguf.GGUFWriter(path, arch)
    # A general.name containing "phi3" or "phi-3" makes llama.cpp set Phi-3's special-token strip attributes,
    # which look up <|endoftext|>: stories260K's vocabulary has none, and the load fails.
    w.add_name(spec.get("general_name", f"ilre-{spec['name']}-random"))
    w.add_context_length(512)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(spec.get("rope_base", 10000.0))
    if head_dim != n_embd // n_head:
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    if arch == "llama":
        w.add_rope_dimension_count(head_dim)
        w.add_vocab_size(n_vocab)
    if arch == "phi3":
        # What convert_hf_to_gguf.py's Phi3MiniModel writes: rope dimension count, the original context, and
        # for a LongRoPE model sqrt(1 + ln(scale) / ln(original)) as the attention factor (no scaling type).
        w.add_rope_dimension_count(head_dim)
        w.add_rope_scaling_orig_ctx_len(spec["orig_ctx"])
        if "attn_factor" in spec:
            w.add_rope_scaling_attn_factors(spec["attn_factor"])
        w.add_sliding_window(spec.get("sliding_window", 0))
    w.add_tokenizer_model("llama")
    w.add_token_list(vocab["tokens"])
    w.add_token_scores(vocab["scores"])
    w.add_token_types(vocab["types"])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)

    def t(name, *shape, scale=None):
        # numpy shape (rows, cols) = ggml ne (cols, rows): a matrix n_in -> n_out is (n_out, n_in).
        fan_in = shape[-1]
        a = rng.standard_normal(shape).astype(np.float32) * np.float32(scale if scale is not None else fan_in ** -0.5)
        w.add_tensor(name, a)

    def norm(name, n):
        w.add_tensor(name, (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32))

    t("token_embd.weight", n_vocab, n_embd, scale=1.0)
    norm("output_norm.weight", n_embd)
    if not spec.get("tied", False):
        t("output.weight", n_vocab, n_embd)
    if spec.get("rope_freqs"):
        # Llama 3's factors: 1 for high frequencies, up to `factor` for the low ones.
        w.add_tensor("rope_freqs.weight", np.linspace(1.0, 8.0, head_dim // 2).astype(np.float32))
    if spec.get("longrope"):
        # Phi-3's factors divide the frequencies like rope_freqs; the two sets differ so that the test sees
        # which one was taken.
        w.add_tensor("rope_factors_long.weight", np.geomspace(1.0, 24.0, head_dim // 2).astype(np.float32))
        w.add_tensor("rope_factors_short.weight", np.linspace(1.0, 1.6, head_dim // 2).astype(np.float32))
    for il in range(n_layer):
        p = f"blk.{il}."
        norm(p + "attn_norm.weight", n_embd)
        if spec.get("fused_qkv"):
            t(p + "attn_qkv.weight", (n_head + 2 * n_head_kv) * head_dim, n_embd)  # rows: Q, then K, then V
        else:
            t(p + "attn_q.weight", n_head * head_dim, n_embd)
            t(p + "attn_k.weight", n_head_kv * head_dim, n_embd)
            t(p + "attn_v.weight", n_head_kv * head_dim, n_embd)
        if spec.get("qkv_bias"):
            t(p + "attn_q.bias", n_head * head_dim, scale=0.5)
            t(p + "attn_k.bias", n_head_kv * head_dim, scale=0.5)
            t(p + "attn_v.bias", n_head_kv * head_dim, scale=0.5)
        if spec.get("qk_norm"):
            norm(p + "attn_q_norm.weight", head_dim)
            norm(p + "attn_k_norm.weight", head_dim)
        t(p + "attn_output.weight", n_embd, n_head * head_dim)
        norm(p + "ffn_norm.weight", n_embd)
        if arch == "phi3":
            t(p + "ffn_up.weight", 2 * n_ff, n_embd)  # rows: gate, then up
        else:
            t(p + "ffn_gate.weight", n_ff, n_embd)
            t(p + "ffn_up.weight", n_ff, n_embd)
        t(p + "ffn_down.weight", n_embd, n_ff)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


SPECS = [
    {"name": "qwen2", "arch": "qwen2", "n_embd": 64, "n_layer": 2, "n_head": 4, "n_head_kv": 2, "head_dim": 16,
     "n_ff": 96, "qkv_bias": True, "tied": True, "rope_base": 1000000.0},
    {"name": "qwen3", "arch": "qwen3", "n_embd": 64, "n_layer": 2, "n_head": 4, "n_head_kv": 2, "head_dim": 32,
     "n_ff": 96, "qk_norm": True, "rope_base": 1000000.0},
    {"name": "llama3", "arch": "llama", "n_embd": 64, "n_layer": 2, "n_head": 4, "n_head_kv": 2, "head_dim": 16,
     "n_ff": 96, "rope_freqs": True, "rope_base": 500000.0},
    # head_dim 12 is, like Phi-3-mini's 96, no power of 4: 1/sqrt(head_dim) is inexact, so scaling Q (llama.cpp's
    # phi3 graph) and scaling Q·K round differently (by ~1e-6 in these logits; with head_dim 16 not at all).
    {"name": "phi3", "arch": "phi3", "n_embd": 48, "n_layer": 2, "n_head": 4, "n_head_kv": 2, "head_dim": 12,
     "n_ff": 96, "fused_qkv": True, "longrope": True, "orig_ctx": 128,
     "attn_factor": math.sqrt(1 + math.log(512 / 128) / math.log(128)), "sliding_window": 8,
     "general_name": "ilre-p3-fused-random"},
    {"name": "phi3split", "arch": "phi3", "n_embd": 48, "n_layer": 2, "n_head": 4, "n_head_kv": 2, "head_dim": 12,
     "n_ff": 96, "longrope": True, "orig_ctx": 512, "attn_factor": 1.125, "tied": True,
     "general_name": "ilre-p3-split-random"},
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vocab", required=True, help="a GGUF whose SentencePiece vocabulary the fixtures reuse")
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", help="comma-separated fixture names to (re)generate; default: all")
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else None
    if only and not only <= {s["name"] for s in SPECS}:
        ap.error(f"--only: unknown fixture(s) {sorted(only - {s['name'] for s in SPECS})}")
    os.makedirs(args.out, exist_ok=True)
    vocab = vocab_fields(args.vocab)
    info = llama_cpp.llama_print_system_info().decode().strip()
    for i, spec in enumerate(SPECS):
        if only and spec["name"] not in only:
            continue
        path = os.path.join(args.out, f"{spec['name']}-tiny-f32.gguf")
        write_model(path, spec["arch"], spec, vocab, np.random.default_rng(1000 + i))
        llm = llama_cpp.Llama(path, n_ctx=512, n_threads=1, n_batch=512, logits_all=True, type_k=0, type_v=0,
                              flash_attn=False, verbose=False)
        cases = []
        for toks in CASES:
            llm.reset()
            llm.eval(toks)
            cases.append({"tokens": toks, "logits": np.array(llm.scores[: len(toks)]).tolist()})
        ref = {"model": os.path.basename(path), "arch": spec["arch"], "n_vocab": len(vocab["tokens"]), "kv_cache": "f32",
               "made_with": f"llama-cpp-python {llama_cpp.__version__} ({info}), 1 thread, one batch, F32 K and V",
               "spec": spec, "cases": cases}
        with open(os.path.join(args.out, f"{spec['name']}-tiny-f32.logits.json"), "w") as f:
            json.dump(ref, f)
        print(path, os.path.getsize(path), "bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
