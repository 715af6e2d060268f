#!/usr/bin/env python3
"""How far today's llama.cpp is from the shared stories260K golden logits (made by llama.cpp c392e50, Feb 2025).

The golden files include llama.cpp's F16 KV-cache rounding; whether a value lands on one side of an F16
rounding boundary or the other depends on the summation order of the machine's SIMD kernels, and one flip
changes later logits by up to ~1e-2 on this tiny model. This script measures that drift for the llama.cpp
installed here, per golden case; ilre's golden test allows itself the same per-case drift as llama.cpp.

    /opt/refvenv/bin/python scripts/measure_llamacpp_drift.py --shared ../shared \
        --out tests/data/stories260K-llamacpp-drift.json
"""
import argparse
import json
import sys

import numpy as np
import llama_cpp


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = {"made_with": f"llama-cpp-python {llama_cpp.__version__}, 1 thread, F16 KV cache, flash_attn off",
           "files": {}}
    for variant in ["f32", "f16"]:
        golden = json.load(open(f"{args.shared}/golden/stories260K-{variant}.logits.json"))
        llm = llama_cpp.Llama(f"{args.shared}/models/stories260K-{variant}.gguf", n_ctx=512, n_threads=1,
                              logits_all=True, flash_attn=False, verbose=False)
        drift = []
        for c in golden["cases"]:
            llm.reset()
            llm.eval(c["tokens"])
            got = np.array(llm.scores[: len(c["tokens"])])
            drift.append(float(np.abs(got - np.array(c["logits"])).max()))
        out["files"][f"stories260K-{variant}.logits.json"] = {"max_abs_diff_per_case": drift}
        print(variant, ["%.2e" % d for d in drift], file=sys.stderr)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
