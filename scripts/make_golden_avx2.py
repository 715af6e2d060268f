#!/usr/bin/env python3
"""Golden logits of stories260K-f16 from an AVX2-only build of llama.cpp (F32 K/V, one batch, one thread).

The shared golden files were made by an AVX-512 build, whose 16-lane float sums differ in the last bits from
an AVX2 build's 8-lane ones; for an F16 model those bits decide F16 roundings, and the two builds' logits
differ by up to 1.4e-2. This file pins the AVX2 order, so that ilre's emulation of both orders is checked
on any machine (tests/model/golden_logits_test.cpp). The 502-token case is left out to keep the file small.

    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF" \\
        python3 -m venv /opt/refvenv-avx2 && /opt/refvenv-avx2/bin/pip install numpy llama-cpp-python==0.3.36
    /opt/refvenv-avx2/bin/python scripts/make_golden_avx2.py --golden ../shared/golden/stories260K-f16.f32kv.logits.json \\
        --model tests/data/models/stories260K-f16.gguf --out /tmp/f.json && \\
        zstd -19 /tmp/f.json -o tests/data/golden/stories260K-f16.f32kv.avx2.logits.json.zst
"""
import argparse
import json
import sys

import numpy as np
import llama_cpp


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--golden", required=True, help="the AVX-512 golden file whose prompts and tokens are reused")
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    info = llama_cpp.llama_print_system_info().decode()
    if "AVX512 = 1" in info or "AVX2 = 1" not in info:
        print("this llama.cpp build is not AVX2-only: " + info, file=sys.stderr)
        return 1
    golden = json.load(open(args.golden))
    llm = llama_cpp.Llama(args.model, n_ctx=512, n_threads=1, n_batch=512, logits_all=True, type_k=0, type_v=0,
                          flash_attn=False, verbose=False)
    cases = []
    for c in golden["cases"]:
        if len(c["tokens"]) > 100:
            continue
        llm.reset()
        llm.eval(c["tokens"])
        logits = np.array(llm.scores[: len(c["tokens"])])
        greedy = []
        for _ in range(48):
            t = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            greedy.append(t)
            llm.eval([t])
        cases.append({"prompt": c["prompt"], "tokens": c["tokens"], "logits": logits.tolist(), "greedy": greedy})
    out = {"model": "stories260K-f16.gguf", "n_vocab": golden["n_vocab"], "kv_cache": "f32",
           "made_with": f"llama-cpp-python {llama_cpp.__version__} built AVX2-only ({info.strip()}), CPU, 1 thread, "
                        "one batch, F32 K and V", "cases": cases}
    with open(args.out, "w") as f:
        json.dump(out, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
