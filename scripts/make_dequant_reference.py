#!/usr/bin/env python3
"""Writes tests/data/gemma_dequant_rows.json: reference data for the quantisation tests.

Sections
  gemma       first two rows of one tensor of each type in the default Gemma-3-270M GGUF, dequantised by
              gguf-py (gguf.quants.dequantize), to check dequantize_row on real weights.
  iq4         the same layouts for IQ4_NL / IQ4_XS, and ggml's own quantisation and vec_dot of them
  layouts     a few blocks of random bytes per computable type with gguf-py's dequantisation, to check the
              bit layout of every type independently of our own quantiser.
  reference   ggml's *_ref quantisation (ggml_quantize_chunk of llama.cpp's libggml-base) of a fixed input,
              to check quantize_row_reference byte for byte. Optional: needs llama_cpp's bundled libggml.
  activation  llama.cpp's CPU-backend activation rounding (type_traits_cpu[vec_dot_type].from_float of
              libggml-cpu, AVX2 build) of a fixed input with exact .5 ties, and ggml's vec_dot of the
              reference weights with it.

Usage: /opt/refvenv/bin/python scripts/make_dequant_reference.py [model.gguf] [out.json]
"""
import ctypes
import glob
import json
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "models", "gemma-3-270m-q4_k_m.gguf")
OUT = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "tests", "data", "gemma_dequant_rows.json")

COMPUTABLE = [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0,
              T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]
# Byte offsets of the fp16 scale fields inside one block: random bytes there could be NaN/inf.
HALF_FIELDS = {T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
               T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208]}


def floats(a):
    # The shortest decimal that reads back (through a double) as the same float32 keeps the file small.
    return [float(np.format_float_scientific(v, unique=True)) for v in np.asarray(a, dtype=np.float32).ravel()]


def name(t):
    return t.name.lower().replace("_k", "_K")


def gemma_section():
    reader = gguf.GGUFReader(MODEL)
    wanted = {}
    for t in reader.tensors:
        if t.tensor_type not in wanted and t.tensor_type in (T.Q8_0, T.Q5_0, T.Q4_K, T.Q6_K, T.F32):
            wanted[t.tensor_type] = t
    out = []
    for qtype, t in sorted(wanted.items(), key=lambda kv: kv[0]):
        n_in = int(t.shape[0])
        n_rows = min(2, int(np.prod(t.shape[1:])) if len(t.shape) > 1 else 1)
        block, type_size = gguf.GGML_QUANT_SIZES[qtype]
        row_bytes = n_in // block * type_size
        raw = np.frombuffer(t.data.tobytes()[: n_rows * row_bytes], dtype=np.uint8)
        rows = gguf.quants.dequantize(raw.reshape(n_rows, row_bytes) if qtype != T.F32 else
                                      raw.view(np.float32).reshape(n_rows, n_in), qtype)
        out.append({"name": t.name, "type": name(qtype), "n_in": n_in,
                    "rows": [floats(r) for r in np.asarray(rows, dtype=np.float32).reshape(n_rows, n_in)]})
    return out


def layout_section(rng):
    out = []
    for qtype in COMPUTABLE:
        block, type_size = gguf.GGML_QUANT_SIZES[qtype]
        n = 2 * max(block, 32) if block > 1 else 64
        nbytes = n // block * type_size
        if qtype == T.F32:
            continue
        if qtype == T.F16:
            raw = rng.normal(0, 2, n).astype(np.float16).view(np.uint8)
        elif qtype == T.BF16:
            raw = (rng.normal(0, 2, n).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
        else:
            raw = rng.integers(0, 256, nbytes, dtype=np.uint8)
            for b in range(n // block):
                for off in HALF_FIELDS[qtype]:
                    h = np.array([rng.uniform(0.002, 0.05) * rng.choice([1, 1, 1, -1])], dtype=np.float16)
                    raw[b * type_size + off: b * type_size + off + 2] = h.view(np.uint8)
        values = gguf.quants.dequantize(raw.reshape(n // block, type_size) if block > 1 else raw.view(
            np.float16 if qtype == T.F16 else np.uint16), qtype) if qtype != T.BF16 else \
            (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        out.append({"type": name(qtype), "n": n, "bytes": raw.tobytes().hex(), "values": floats(values)})
    return out


def special_input(rng, n):
    """Gaussian super-blocks plus the awkward cases: zero, constant, negative-only, huge and tiny blocks."""
    x = rng.normal(0, 1, n).astype(np.float32)
    x[256:288] = 0.0
    x[288:320] = 0.75
    x[320:352] = -np.abs(x[320:352]) - 0.1
    x[352:384] *= 1000.0
    x[384:416] *= 1e-3
    x[512:768] = 0.0                      # a whole zero super-block
    x[768:1024] = np.abs(x[768:1024])     # a positive-only super-block
    return x


def tie_input(rng, n):
    """Blocks whose largest magnitude is 127 make the Q8_0 and Q8_K multipliers exactly +-1, so values
    ending in .5 are exact rounding ties (round-half-even vs half-away-from-zero differ there)."""
    x = rng.normal(0, 30, n).astype(np.float32)
    for b in range(0, n, 32):
        x[b + 1] = 127.0 if (b // 32) % 2 == 0 else -127.0
        x[b + 2: b + 10] = [0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 100.5, -126.5]
    x[256:512] = np.round(x[256:512]) + 0.5   # ties everywhere in the second super-block
    x[257] = -127.0
    return np.clip(x, -127.0, 127.0).astype(np.float32)


def find_lib(stem):
    hits = glob.glob(os.path.join(sys.prefix, "lib", "python*", "site-packages", "llama_cpp", "lib", stem + ".so"))
    return hits[0] if hits else None


class TypeTraitsCpu(ctypes.Structure):
    _fields_ = [("from_float", ctypes.c_void_p), ("vec_dot", ctypes.c_void_p),
                ("vec_dot_type", ctypes.c_int), ("nrows", ctypes.c_int64)]


FROM_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
VEC_DOT = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.POINTER(ctypes.c_float), ctypes.c_size_t, ctypes.c_void_p,
                           ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)


def load_ggml():
    """llama_cpp's bundled libggml-base and libggml-cpu with the two entry points used here, or None."""
    base_path, cpu_path = find_lib("libggml-base"), find_lib("libggml-cpu")
    if not base_path or not cpu_path:
        return None
    base = ctypes.CDLL(base_path)
    cpu = ctypes.CDLL(cpu_path)
    base.ggml_quantize_chunk.restype = ctypes.c_size_t
    base.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                         ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    cpu.ggml_get_type_traits_cpu.restype = ctypes.POINTER(TypeTraitsCpu)
    cpu.ggml_get_type_traits_cpu.argtypes = [ctypes.c_int]
    cpu.ggml_cpu_init()
    return base, cpu


def ggml_sections(rng):
    libs = load_ggml()
    if not libs:
        print("llama_cpp's libggml not found: skipping the reference/activation sections", file=sys.stderr)
        return None, None
    base, cpu = libs

    n = 1024
    x = special_input(rng, n)
    reference = {"n": n, "input": floats(x), "results": []}
    weights = {}
    for qtype in COMPUTABLE:
        block, type_size = gguf.GGML_QUANT_SIZES[qtype]
        dst = np.zeros(n // block * type_size, dtype=np.uint8)
        base.ggml_quantize_chunk(int(qtype), x.ctypes.data, dst.ctypes.data, 0, 1, n, None)
        weights[qtype] = dst
        reference["results"].append({"type": name(qtype), "bytes": dst.tobytes().hex()})

    a = tie_input(rng, n)
    activation = {"n": n, "input": floats(a), "formats": {}, "dots": []}
    for qtype in COMPUTABLE:
        traits = cpu.ggml_get_type_traits_cpu(int(qtype)).contents
        act_type = T(traits.vec_dot_type)
        act_traits = cpu.ggml_get_type_traits_cpu(int(act_type)).contents
        block, type_size = gguf.GGML_QUANT_SIZES[act_type]
        if act_type == T.Q8_1:
            type_size = 36  # ggml's block_q8_1 holds two fp16; GGML_QUANT_SIZES still lists 40 bytes
        act = np.zeros(n // block * type_size + 64, dtype=np.uint8)
        FROM_FLOAT(act_traits.from_float)(a.ctypes.data, act.ctypes.data, n)
        act = act[: n // block * type_size]
        activation["formats"][name(act_type)] = act.tobytes().hex()
        s = ctypes.c_float(0.0)
        VEC_DOT(traits.vec_dot)(n, ctypes.byref(s), 0, weights[qtype].ctypes.data, 0, act.ctypes.data, 0, 1)
        activation["dots"].append({"weight_type": name(qtype), "activation_type": name(act_type),
                                   "dot": float(np.float32(s.value))})
    return reference, activation


IQ4 = [T.IQ4_NL, T.IQ4_XS]


def iq4_section(rng):
    """IQ4_NL / IQ4_XS, drawn after every other section so the older data stays as it was: random blocks with
    gguf-py's dequantisation, and (with libggml) ggml's quantisation of a fixed input, its activation row and
    ggml's vec_dot on exactly those bytes."""
    out = {"layouts": [], "dots": []}
    for qtype in IQ4:
        block, type_size = gguf.GGML_QUANT_SIZES[qtype]
        n = 2 * block
        raw = rng.integers(0, 256, n // block * type_size, dtype=np.uint8)
        for b in range(n // block):
            h = np.array([rng.uniform(0.002, 0.05) * rng.choice([1, 1, 1, -1])], dtype=np.float16)
            raw[b * type_size: b * type_size + 2] = h.view(np.uint8)
        values = gguf.quants.dequantize(raw.reshape(n // block, type_size), qtype)
        out["layouts"].append({"type": name(qtype), "n": n, "bytes": raw.tobytes().hex(), "values": floats(values)})
    libs = load_ggml()
    if not libs:
        return out
    base, cpu = libs
    n = 1024
    x = special_input(rng, n)
    a = tie_input(rng, n)
    out["input"], out["activation_input"] = floats(x), floats(a)
    for qtype in IQ4:
        block, type_size = gguf.GGML_QUANT_SIZES[qtype]
        w = np.zeros(n // block * type_size, dtype=np.uint8)
        base.ggml_quantize_chunk(int(qtype), x.ctypes.data, w.ctypes.data, 0, 1, n, None)
        traits = cpu.ggml_get_type_traits_cpu(int(qtype)).contents
        act_type = T(traits.vec_dot_type)
        act_traits = cpu.ggml_get_type_traits_cpu(int(act_type)).contents
        ab, asz = gguf.GGML_QUANT_SIZES[act_type]
        act = np.zeros(n // ab * asz + 64, dtype=np.uint8)
        FROM_FLOAT(act_traits.from_float)(a.ctypes.data, act.ctypes.data, n)
        s = ctypes.c_float(0.0)
        VEC_DOT(traits.vec_dot)(n, ctypes.byref(s), 0, w.ctypes.data, 0, act.ctypes.data, 0, 1)
        out["dots"].append({"weight_type": name(qtype), "activation_type": name(act_type), "weights": w.tobytes().hex(),
                            "dot": float(np.float32(s.value))})
    return out


def main():
    rng = np.random.default_rng(20240611)
    doc = {"model": os.path.basename(MODEL), "gemma": gemma_section() if os.path.exists(MODEL) else [],
           "layouts": layout_section(rng)}
    reference, activation = ggml_sections(rng)
    if reference:
        doc["reference"] = reference
        doc["activation"] = activation
    doc["iq4"] = iq4_section(rng)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
