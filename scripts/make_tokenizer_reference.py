#!/usr/bin/env python3
"""Records llama.cpp's tokenisation of the Gemma 3 vocabulary as tests/data/gemma3_tokenizer_reference.json.

Needs llama-cpp-python (the reference build lives in /opt/refvenv):
    /opt/refvenv/bin/python scripts/make_tokenizer_reference.py [models/gemma-3-270m-q4_k_m.gguf]

The C++ tests (tests/model/tokenizer_golden_test.cpp) compare against the JSON file; Python is never needed to
run them. Texts are stored as hex so that strings with invalid UTF-8 survive JSON.

Besides single strings, the file records a digest (count and FNV-1a of the ids) of a larger corpus built from
the same strings (corpus() below; the C++ test rebuilds it from the JSON).

With --llama-vocab-dir DIR (llama.cpp's ggml-vocab-*.gguf files, e.g. /opt/llama-vocab) it also writes
tests/data/llama_vocab_tokenizer_reference.json: the corpus digest for each of those vocabularies, so the
pre-tokenizers without vectors of their own (e.g. "default") are checked wherever the vocabularies are installed.
"""
import ctypes
import json
import os
import random
import sys

import llama_cpp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MODEL = os.path.join(ROOT, "models", "gemma-3-270m-q4_k_m.gguf")
OUT = os.path.join(ROOT, "tests", "data", "gemma3_tokenizer_reference.json")
OUT_VOCABS = os.path.join(ROOT, "tests", "data", "llama_vocab_tokenizer_reference.json")
LLAMA_VOCABS = ["aquila", "baichuan", "command-r", "gpt-2", "gpt-neox", "llama-bpe", "llama-spm", "mpt", "phi-3",
                "qwen2", "refact", "starcoder"]

TEXTS = [
    "",
    " ",
    "  ",
    "Hello world",
    " Hello world",
    "  Hello  world  ",
    "Hello, world! How are you today?",
    "The quick brown fox jumps over the lazy dog.",
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the sunshine.",
    "It's a dog's life; we'll see, they're here, I've done it, you'd know, I'm fine.",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "#include <vector>\nint main() {\n\tstd::vector<int> v{1, 2, 3};\n\treturn v.size();\n}\n",
    '{"key": [1, 2.5, -3e10, true, null], "nested": {"a": "b"}}',
    "SELECT id, name FROM users WHERE age >= 21 ORDER BY name;",
    "line one\nline two\n\nline four\n\n\nline seven\n\n\n\n\nend",
    "tabs\tbetween\t\twords\t\t\t\tand\t\t\t\t\t\t\t\t\tmore",
    "\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t",
    " " * 40 + "x" + " " * 33,
    "\n" * 45 + "after newlines",
    "mixed \t \n \r\n \t\t  \n\n  whitespace",
    "\r\n\r\nwindows\r\nlines\r\n",
    "1234567890 3.14159 1,000,000 2024-06-01 0x1F 1e-9 42nd",
    "333 3333 33333 333333",
    "我想在苹果公司工作。今天天气很好！",
    "日本語のテキストです。カタカナとひらがな、漢字。",
    "مرحبا بالعالم، هذا نص عربي.",
    "नमस्ते दुनिया, यह हिंदी पाठ है।",
    "Привет, мир! Это русский текст.",
    "Ελληνικά κείμενα και ένα ακόμη.",
    "한국어 텍스트입니다.",
    "ไทย ภาษาไทย",
    "Füße, Straße, naïve café, Ångström, façade — “quotes” ‘single’ …",
    "emoji 🙂😀🎉🚀 and 🦙.cpp",
    "family 👨‍👩‍👧‍👦 and 👩🏽‍💻 skin 👍🏻👍🏿 flags 🇺🇸🇯🇵",
    "🙂" * 20,
    "<html><body><h1>Title</h1><p>Some <b>bold</b> and <i>italic</i> text.</p></body></html>",
    "<table><tr><td>a</td><td>b</td></tr></table>",
    "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n",
    "<start_of_turn>model\nThe answer is 4.<end_of_turn>",
    "<bos>hello<eos>",
    "text before <bos> middle <eos> after",
    "<end_of_turn><end_of_turn><start_of_turn>",
    "<start_of_turn",
    "<s> and </s> tags",
    "<unused0> <unused99> <mask> <pad> <unk>",
    "[multimodal] <start_of_image> <end_of_image>",
    " <start_of_turn> leading space",
    "\x00\x01\x02 control \x07\x1b[31m chars \x7f",
    "NUL\x00inside",
    "a" * 300,
    "ab" * 150,
    "▁ already ▁▁ escaped",
    "https://example.com/path?query=1&other=two#frag",
    "user@example.com, +1 (555) 123-4567",
    "    indented four\n        indented eight",
    "CamelCaseWordsAndsnake_case_words and kebab-case-words",
    "$100 + €200 = £300; 50% off!!! ???",
    "math: ∑ᵢ xᵢ² ≤ ∞, α→β, √2 ≈ 1.414",
    "Ünïcödé ñ ç ø",
    "a\u0301 e\u0308 combining marks",
    "zero\u200bwidth\u200djoiner\ufeffbom",
]

# Invalid UTF-8 (bytes): llama.cpp's SPM falls back to byte tokens of the raw bytes.
BYTE_TEXTS = [
    b"\xff",
    b"abc\xe2\x82",
    b"\xc3\x28 invalid",
    b"ok \xed\xa0\x80 surrogate",
    b"\xf0\x9f\x99 truncated emoji",
]


def tokenize(vocab, data: bytes, add_special: bool, parse_special: bool):
    n_max = len(data) * 4 + 16
    buf = (llama_cpp.llama_token * n_max)()
    n = llama_cpp.llama_tokenize(vocab, data, len(data), buf, n_max, add_special, parse_special)
    if n < 0:
        raise RuntimeError(f"tokenize failed for {data!r}: {n}")
    return list(buf[:n])


def piece(vocab, token: int, special: bool) -> bytes:
    size = 256
    buf = ctypes.create_string_buffer(size)
    n = llama_cpp.llama_token_to_piece(vocab, token, buf, size, 0, special)
    if n < 0:
        raise RuntimeError(f"piece too long for token {token}")
    return buf.raw[:n]


def detokenize(vocab, ids, render_special: bool) -> bytes:
    arr = (llama_cpp.llama_token * len(ids))(*ids)
    size = 64 * len(ids) + 64
    buf = ctypes.create_string_buffer(size)
    n = llama_cpp.llama_detokenize(vocab, arr, len(ids), buf, size, False, render_special)
    if n < 0:
        raise RuntimeError("detokenize buffer too small")
    return buf.raw[:n]


def corpus(texts):
    """The strings joined 20 times over in a fixed order (every 7th, cyclically), separated by newlines."""
    t = len(texts)
    return b"\n".join(texts[(k * 7) % t] for k in range(20 * t))


def digest(ids):
    """FNV-1a 64 over the ids as little-endian int32."""
    h = 0xCBF29CE484222325
    for i in ids:
        for b in (i & 0xFFFFFFFF).to_bytes(4, "little"):
            h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return {"n": len(ids), "fnv": f"{h:016x}"}


def corpus_digests(vocab, data):
    return {("parse_special" if ps else "plain"): digest(tokenize(vocab, data, True, ps)) for ps in (False, True)}


def all_texts():
    return [t.encode("utf-8") for t in TEXTS] + BYTE_TEXTS


def llama_vocab_reference(directory):
    data = corpus(all_texts())
    out = {"generator": "scripts/make_tokenizer_reference.py --llama-vocab-dir",
           "llama_cpp_python_version": llama_cpp.__version__, "vocabs": {}}
    for name in LLAMA_VOCABS:
        path = os.path.join(directory, f"ggml-vocab-{name}.gguf")
        if not os.path.exists(path):
            continue
        llm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
        out["vocabs"][name] = {"bytes": os.path.getsize(path), "corpus": corpus_digests(llm._model.vocab, data)}
        del llm
    with open(OUT_VOCABS, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"wrote {OUT_VOCABS}: {len(out['vocabs'])} vocabularies")


def main():
    args = sys.argv[1:]
    if len(args) >= 2 and args[0] == "--llama-vocab-dir":
        llama_vocab_reference(args[1])
        args = args[2:]
    model_path = args[0] if args else DEFAULT_MODEL
    llm = llama_cpp.Llama(model_path=model_path, vocab_only=True, verbose=False)
    vocab = llm._model.vocab
    n_tokens = llama_cpp.llama_vocab_n_tokens(vocab)

    cases = []
    for data in all_texts():
        for add_special in (False, True):
            for parse_special in (False, True):
                cases.append({
                    "text_hex": data.hex(),
                    "add_special": add_special,
                    "parse_special": parse_special,
                    "ids": tokenize(vocab, data, add_special, parse_special),
                })

    texts = [llama_cpp.llama_vocab_get_text(vocab, i) for i in range(n_tokens)]
    ids = set(range(0, 400))
    ids |= {i for i, t in enumerate(texts) if t.startswith(b"<0x") and len(t) == 6}  # byte tokens
    ids |= set(range(n_tokens - 200, n_tokens))  # user-defined tab runs live at the end
    for t in (b"<start_of_turn>", b"<end_of_turn>", b"</s>", b"<s>", b"<start_of_image>", b"\xe2\x96\x81"):
        if t in texts:
            ids.add(texts.index(t))
    rng = random.Random(1234)
    ids |= set(rng.sample(range(n_tokens), 300))
    pieces = [{
        "id": i,
        "plain_hex": piece(vocab, i, False).hex(),
        "special_hex": piece(vocab, i, True).hex(),
    } for i in sorted(ids)]

    detok = []
    for data in [TEXTS[4].encode(), TEXTS[8].encode(), TEXTS[37].encode(), TEXTS[33].encode(), b"\xff abc", b" x"]:
        for parse_special in (False, True):
            toks = tokenize(vocab, data, True, parse_special)
            for render_special in (False, True):
                detok.append({"ids": toks, "render_special": render_special,
                              "text_hex": detokenize(vocab, toks, render_special).hex()})

    ref = {
        "generator": "scripts/make_tokenizer_reference.py",
        "llama_cpp_python_version": llama_cpp.__version__,
        "model": os.path.basename(model_path),
        "model_bytes": os.path.getsize(model_path),
        "vocab": {
            "n_tokens": n_tokens,
            "bos": llama_cpp.llama_vocab_bos(vocab),
            "eos": llama_cpp.llama_vocab_eos(vocab),
            "eot": llama_cpp.llama_vocab_eot(vocab),
            "add_bos": bool(llama_cpp.llama_vocab_get_add_bos(vocab)),
            "add_eos": bool(llama_cpp.llama_vocab_get_add_eos(vocab)),
            "eog": [i for i in range(n_tokens) if llama_cpp.llama_vocab_is_eog(vocab, i)],
        },
        "tokenize": cases,
        "corpus": corpus_digests(vocab, corpus(all_texts())),
        "pieces": pieces,
        "detokenize": detok,
    }
    with open(OUT, "w") as f:
        json.dump(ref, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {OUT}: {len(cases)} tokenize cases, {len(pieces)} pieces, {len(detok)} detokenize cases, "
          f"{os.path.getsize(OUT)} bytes")


if __name__ == "__main__":
    main()
