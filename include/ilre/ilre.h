/* ilre.h: the C API of ilre, for every language that is not C++ (C, Python ctypes/cffi, Rust, Go, ...).
 *
 *   ilre_engine* e = NULL;  char* err = NULL;  char* json = NULL;
 *   const char* sets[] = {"decode.max_tokens=32"};
 *   if (ilre_engine_open("model.gguf", NULL, sets, 1, &e, &err) != ILRE_OK) { puts(err); ilre_string_free(err); }
 *   ilre_ingest_file(e, "book.txt", "stores/book", 0, NULL, NULL, NULL, &json, &err);   ilre_string_free(json);
 *   ilre_ask(e, "stores/book", "Who wrote the letter?", print_piece, NULL, NULL, NULL, &json, &err);
 *   ... json = {"text": ..., "spans": [[s, e], ...], ...} ...                            ilre_string_free(json);
 *   ilre_engine_free(e);
 *
 * A thin layer over the C++ API of ilre/engine.h: the same engine, stores and pipelines. It is plain C99:
 * opaque handles, C strings, status codes; no C++ type and no exception crosses it (every function catches
 * everything and reports it as a status and a message).
 *
 * Conventions (every function):
 *  - Returns an ilre_status (ILRE_OK = 0), unless it is documented to return something else.
 *  - A required pointer argument that is NULL gives ILRE_E_INVALID_ARGUMENT, never a crash.
 *  - Strings in are NUL-terminated UTF-8 (file paths as the OS takes them) and are only read during the call.
 *  - `char** error_message` may be NULL. Otherwise *error_message is set to NULL on success and, on failure,
 *    to a malloc'ed message ("store 'x' ... not found") that the caller frees with ilre_string_free.
 *  - `char** ..._json` outputs may be NULL (the result is then dropped). Otherwise *out is set to a malloc'ed
 *    JSON object on success and NULL on failure; the caller frees it with ilre_string_free.
 *  - Pointers returned directly (ilre_version, ilre_status_name) are static: never free them.
 *
 * Thread-safety: an ilre_engine may be used by any number of threads at once (ingests and asks on it run
 * as separate pipelines sharing the model, the thread pools and the memory budget), except ilre_engine_free,
 * which must be the last call on it. Two ingests into the same store at once are refused (the writer lock).
 * ilre_cancel_request may be called from any thread at any time.
 * Callbacks: all calls happen before the operation's function returns, and calls of one callback of one
 * operation never overlap. on_progress runs on the thread that called the function; on_token runs on an
 * engine thread, so it may run at the same time as on_progress (guard data they share in `user`). They may
 * call ilre_cancel_request; they must not throw C++ exceptions, longjmp out, or free the engine.
 *
 * Logging: ilre logs through spdlog's default logger (stdout, level info); see ilre_set_log_level.
 * Configuration: defaults, then config YAML, then overrides; ILRE_* environment variables are NOT applied
 * (that is the CLI's job); the model is found as the C++ Engine::open does (see ilre_engine_open).
 */
#ifndef ILRE_ILRE_H
#define ILRE_ILRE_H

#include <stddef.h>
#include <stdint.h>

#if defined(__has_include)
#if __has_include("ilre/version.h")
#include "ilre/version.h"
#endif
#endif
#ifndef ILRE_VERSION_STRING
#define ILRE_VERSION_MAJOR 0
#define ILRE_VERSION_MINOR 2
#define ILRE_VERSION_PATCH 0
#define ILRE_VERSION_STRING "0.2.0"
#endif

/* What libilre.so exports. */
#if defined(_WIN32)
#define ILRE_C_API
#else
#define ILRE_C_API __attribute__((visibility("default")))
#endif

/* C++ callers see every function as noexcept (they are: nothing is thrown through this API). */
#ifdef __cplusplus
#define ILRE_NOEXCEPT noexcept
#else
#define ILRE_NOEXCEPT
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes: one to one with ilre::errc (include/ilre/error.h), same numbers. */
typedef enum ilre_status {
  ILRE_OK = 0,
  ILRE_E_INVALID_ARGUMENT = 1, /* a caller passed something unusable (NULL, empty question, bad override) */
  ILRE_E_BAD_GGUF = 2,         /* malformed, truncated or hostile model file */
  ILRE_E_UNSUPPORTED = 3,      /* well-formed input ilre does not implement (tensor type, architecture) */
  ILRE_E_BAD_UTF8 = 4,         /* text that is not valid UTF-8 where that matters */
  ILRE_E_BAD_JSON = 5,         /* malformed JSON / YAML / config */
  ILRE_E_IO_FAILED = 6,        /* open/read/write/fsync/rename failed (e.g. a store that does not exist) */
  ILRE_E_DISK_FULL = 7,        /* ENOSPC / EDQUOT while writing */
  ILRE_E_CHECKSUM_MISMATCH = 8,/* on-disk data does not match its recorded checksum */
  ILRE_E_MODEL_MISMATCH = 9,   /* a store made by a different model or l_R */
  ILRE_E_CANCELLED = 10,       /* ilre_cancel_request, or a deadline, stopped the work */
  ILRE_E_QUEUE_CLOSED = 11,    /* a pipeline queue closed while an actor waited on it */
  ILRE_E_OUT_OF_RANGE = 12,    /* a position, token id or size outside what the model/store allows */
  ILRE_E_INTERNAL = 13,        /* a broken invariant inside ilre (or out of memory): always a bug */
  ILRE_E_NOT_FOUND = 14        /* a named thing (a document, a store) does not exist */
} ilre_status;

/* Opaque handles. */
typedef struct ilre_engine ilre_engine; /* a loaded model + thread pools; see ilre_engine_open */
typedef struct ilre_cancel ilre_cancel; /* stops a running ingest or ask; see ilre_cancel_new */

/* Progress of long work, called about every 200 ms and once at the end, on the calling thread.
 * phase "ingest": processed/total in bytes (total < 0 when unknown, e.g. stdin), tokens = tokens prefilled;
 * ask: "score" and then "prefill-prompt" (processed/total = stored tokens scored / all), "generate"
 * (tokens generated / decode.max_tokens); tokens is 0. phase is valid during the call only. */
typedef void (*ilre_progress_fn)(const char* phase, int64_t processed, int64_t total, int64_t tokens,
                                 double elapsed_ms, void* user);

/* Each generated piece of the answer as soon as it is sampled: one token's bytes, piece[0..len), not
 * NUL-terminated, valid during the call only (UTF-8, but a piece may end inside a character).
 * Return nonzero to continue, 0 to stop generating: the ask then returns ILRE_OK with the answer so far. */
typedef int (*ilre_token_fn)(const char* piece, size_t len, void* user);

/* "0.2.0": the library's version (may differ from the ILRE_VERSION_STRING a program was compiled with).
 * Static string. Thread-safe. */
ILRE_C_API const char* ilre_version(void) ILRE_NOEXCEPT;

/* "ok", "invalid_argument", ... (ilre::errc_name); "unknown" for a number that is no status.
 * Static string. Thread-safe. */
ILRE_C_API const char* ilre_status_name(int status) ILRE_NOEXCEPT;

/* Frees a string returned by this API (error messages, JSON). NULL is ignored. Thread-safe. */
ILRE_C_API void ilre_string_free(char* s) ILRE_NOEXCEPT;

/* Level of ilre's log (spdlog's default logger, process-wide): "trace", "debug", "info" (default), "warn",
 * "error", "critical" or "off". ILRE_E_INVALID_ARGUMENT for another name. Thread-safe. */
ILRE_C_API int ilre_set_log_level(const char* level) ILRE_NOEXCEPT;

/* Loads a model and starts the engine. All inputs are optional:
 *  model_path_or_null   GGUF file or model name; NULL: model.path of the config, else $ILRE_MODEL, models/,
 *                       tests/data/models/ (as the CLI). A non-NULL path (not "") wins over the config.
 *  config_yaml_or_null  YAML text (not a file name) in the schema of configs/reference.yaml; unknown keys
 *                       are errors. NULL or "": defaults.
 *  overrides            n_overrides "a.b=value" strings applied after the YAML ("recall.budget=4096",
 *                       "decode.max_tokens=32"), as the CLI's --set. May be NULL when n_overrides is 0.
 * On success *out is the engine (free with ilre_engine_free); on failure *out is NULL.
 * Slow (reads the model). Thread-safe (each call makes its own engine). */
ILRE_C_API int ilre_engine_open(const char* model_path_or_null, const char* config_yaml_or_null,
                                const char* const* overrides, size_t n_overrides, ilre_engine** out,
                                char** error_message) ILRE_NOEXCEPT;

/* Stops the engine's threads and frees it. NULL is ignored. Must not run concurrently with any other call
 * on the same engine (every ingest and ask on it must have returned). */
ILRE_C_API void ilre_engine_free(ilre_engine* engine) ILRE_NOEXCEPT;

/* l_R, the layer whose keys new stores hold; -1 if engine is NULL. Thread-safe. */
ILRE_C_API int ilre_engine_retrieval_layer(const ilre_engine* engine) ILRE_NOEXCEPT;

/* Flags of ilre_ingest_file / ilre_ingest_text (a bit set; 0 = a new document). */
enum {
  /* Continue the document already in store_dir (a document stream) instead of replacing the store. */
  ILRE_INGEST_APPEND = 1,
  /* Leave the document open: the tokenizer's held-back text and a partial chunk stay in the store, so the
   * next ILRE_INGEST_APPEND continues the very same token stream (parts split anywhere, even mid-word,
   * give the tokens of the whole text). Without it the document is finished at the end of the call. */
  ILRE_INGEST_KEEP_OPEN = 2
};

/* Ingests a document into store_dir: tokenize -> prefill through layer l_R -> keys on disk (constant memory).
 * Without ILRE_INGEST_APPEND the store is created: store_dir must not exist or be an empty directory (a
 * store is never overwritten). With it the store must exist and come from this engine's model and l_R.
 * path "-" reads stdin. on_progress (may be NULL) gets `user`. cancel_or_null: see ilre_cancel_new.
 * report_json: {"store_dir", "tokens_added", "total_tokens", "segments_added", "layer", "bytes_read",
 *   "replaced_bytes", "raw_key_bytes", "stored_key_bytes", "key_compression_ratio", "timings_ms": {stage: ms,
 *   "total": ms}, "tokens_per_second", "peak_rss_mb"}.
 * Thread-safe (see the top of this file). */
ILRE_C_API int ilre_ingest_file(ilre_engine* engine, const char* path, const char* store_dir, unsigned flags,
                                ilre_progress_fn on_progress, void* user, ilre_cancel* cancel_or_null,
                                char** report_json, char** error_message) ILRE_NOEXCEPT;

/* As ilre_ingest_file, for text[0..len) in memory (copied; need not be NUL-terminated). len 0 is
 * ILRE_E_INVALID_ARGUMENT (an empty document); text may be NULL only then. */
ILRE_C_API int ilre_ingest_text(ilre_engine* engine, const char* text, size_t len, const char* store_dir,
                                unsigned flags, ilre_progress_fn on_progress, void* user,
                                ilre_cancel* cancel_or_null, char** report_json, char** error_message) ILRE_NOEXCEPT;

/* Store information without reading any keys; checks the store was made with this engine's model.
 * store_json: {"dir", "model_name", "model_fingerprint", "layer", "tokens", "segments", "stored_bytes",
 *   "resumable", "open", "pending_tokens", "created_at", "updated_at"}. Thread-safe. */
ILRE_C_API int ilre_store_info(const ilre_engine* engine, const char* store_dir, char** store_json,
                               char** error_message) ILRE_NOEXCEPT;

/* Answers a question about the document in store_dir (score the stored keys -> pool -> recall a compressed
 * prompt -> decode); never re-runs the document prefill. Sees the store as of the call (an append running
 * meanwhile is not seen). A question of only whitespace is ILRE_E_INVALID_ARGUMENT.
 * on_token and on_progress may be NULL; both get `user`. cancel_or_null: see ilre_cancel_new.
 * answer_json: {"text", "spans": [[start, end], ...] (recalled document token ranges, end exclusive),
 *   "context_tokens", "recalled", "compressed", "prompt_tokens", "generated_tokens", "layer",
 *   "timings_ms": {stage: ms, "ttft", "encode_query", "total"}, "peak_rss_mb"}.
 * "text" is exactly the concatenation of the on_token pieces (a piece is one token's bytes and may end inside
 * a UTF-8 character; in the JSON, bytes that are not valid UTF-8 become U+FFFD).
 * Thread-safe (see the top of this file). */
ILRE_C_API int ilre_ask(ilre_engine* engine, const char* store_dir, const char* question, ilre_token_fn on_token,
                        ilre_progress_fn on_progress, void* user, ilre_cancel* cancel_or_null, char** answer_json,
                        char** error_message) ILRE_NOEXCEPT;

/* A cancellation token. Pass it to one or more ingests/asks; ilre_cancel_request (from any thread, e.g. a
 * signal-watching thread or a callback) makes them return ILRE_E_CANCELLED soon. One-shot: once requested
 * it stays requested, and an operation started with it later is cancelled at once; make a new one per
 * operation. NULL if out of memory. Thread-safe. */
ILRE_C_API ilre_cancel* ilre_cancel_new(void) ILRE_NOEXCEPT;
/* Requests cancellation. NULL is ignored. Thread-safe; may be called repeatedly. */
ILRE_C_API void ilre_cancel_request(ilre_cancel* cancel) ILRE_NOEXCEPT;
/* 1 once cancellation was requested, 0 otherwise (and for NULL). Thread-safe. */
ILRE_C_API int ilre_cancel_requested(const ilre_cancel* cancel) ILRE_NOEXCEPT;
/* Frees the handle. NULL is ignored. Operations running with it keep their own reference, so this is safe
 * while they run, but no thread may use the handle after this call. */
ILRE_C_API void ilre_cancel_free(ilre_cancel* cancel) ILRE_NOEXCEPT;

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* ILRE_ILRE_H */
