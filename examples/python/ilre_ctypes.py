#!/usr/bin/env python3
"""Ask a question about a text file through libilre.so's C API (include/ilre/ilre.h), with ctypes only."""
import argparse, ctypes as C, os, shutil, sys, tempfile

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("model"), ap.add_argument("document"), ap.add_argument("question")
ap.add_argument("--lib", default=os.environ.get("ILRE_LIB", "libilre.so"), help="path of libilre.so ($ILRE_LIB)")
ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. recall.budget=512")
args = ap.parse_args()

lib = C.CDLL(args.lib)
Str, P, S = C.POINTER(C.c_char), C.c_void_p, C.c_char_p  # Str: a char* the library malloc'ed (ilre_string_free)
TOKEN_FN = C.CFUNCTYPE(C.c_int, C.POINTER(C.c_char), C.c_size_t, P)
PROGRESS_FN = C.CFUNCTYPE(None, S, C.c_int64, C.c_int64, C.c_int64, C.c_double, P)
NO_PROGRESS = PROGRESS_FN()  # a NULL callback (ctypes refuses None for a CFUNCTYPE argument)
lib.ilre_status_name.restype = S
lib.ilre_engine_open.argtypes = [S, S, C.POINTER(S), C.c_size_t, C.POINTER(P), C.POINTER(Str)]
lib.ilre_ingest_file.argtypes = [P, S, S, C.c_uint, PROGRESS_FN, P, P, C.POINTER(Str), C.POINTER(Str)]
lib.ilre_ask.argtypes = [P, S, S, TOKEN_FN, PROGRESS_FN, P, P, C.POINTER(Str), C.POINTER(Str)]
lib.ilre_string_free.argtypes, lib.ilre_engine_free.argtypes, lib.ilre_set_log_level.argtypes = [Str], [P], [S]

def take(p):  # the library's string as a Python str; frees it
    s = C.cast(p, S).value.decode("utf-8", "replace") if p else None
    lib.ilre_string_free(p)
    return s

def check(status, err):
    if status != 0:
        sys.exit(f"ilre: {lib.ilre_status_name(status).decode()}: {take(err)}")

@TOKEN_FN
def on_token(piece, n, user):  # runs on an engine thread; bytes, as a piece may split a UTF-8 character
    sys.stdout.buffer.write(C.string_at(piece, n))
    sys.stdout.flush()
    return 1  # 0 would stop generating

lib.ilre_set_log_level(b"warn")  # ilre logs through spdlog, to stdout at level info
sets = (S * max(1, len(args.set)))(*[s.encode() for s in args.set])
engine, err, report, answer = P(), Str(), Str(), Str()
check(lib.ilre_engine_open(args.model.encode(), None, sets, len(args.set), C.byref(engine), C.byref(err)), err)
store = tempfile.mkdtemp(prefix="ilre-store-")  # an empty directory: ingest never overwrites a store
try:
    check(lib.ilre_ingest_file(engine, args.document.encode(), store.encode(), 0, NO_PROGRESS, None, None,
                               C.byref(report), C.byref(err)), err)
    print("ingest:", take(report), file=sys.stderr)
    check(lib.ilre_ask(engine, store.encode(), args.question.encode(), on_token, NO_PROGRESS, None, None,
                       C.byref(answer), C.byref(err)), err)
    print("\nanswer:", take(answer))
finally:
    lib.ilre_engine_free(engine)
    shutil.rmtree(store, ignore_errors=True)
