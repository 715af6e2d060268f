/* The C API (include/ilre/ilre.h) from plain C on the tiny real model stories260K: open, ingest, ask with
 * streamed tokens, cancel from another thread, stop from the callback, append, error paths, concurrent
 * asks, and freeing everything (run it under valgrind or ASan for leaks).
 * Usage: capi_test <stories260K-f32.gguf>. Exit code 0 when every check passed. */
#define _XOPEN_SOURCE 700 /* mkdtemp, nftw */

#include "ilre/ilre.h"

#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int failures = 0;
static int checks = 0;

#define CHECK(cond, ...)                                                \
  do {                                                                  \
    ++checks;                                                           \
    if (!(cond)) {                                                      \
      ++failures;                                                       \
      fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);   \
      fprintf(stderr, __VA_ARGS__);                                     \
      fputc('\n', stderr);                                              \
    }                                                                   \
  } while (0)

/* ---- tiny JSON readers for the flat objects the API returns ---- */

/* The integer value of "key" in json; -1 when absent. */
static long long json_int(const char* json, const char* key) {
  char pattern[128];
  snprintf(pattern, sizeof pattern, "\"%s\":", key);
  const char* p = json ? strstr(json, pattern) : NULL;
  if (!p) return -1;
  return strtoll(p + strlen(pattern), NULL, 10);
}

static int json_bool(const char* json, const char* key) {
  char pattern[128];
  snprintf(pattern, sizeof pattern, "\"%s\":", key);
  const char* p = json ? strstr(json, pattern) : NULL;
  if (!p) return -1;
  return strncmp(p + strlen(pattern), "true", 4) == 0;
}

static void put_utf8(unsigned cp, char* out, size_t* n, size_t cap) {
  unsigned char b[4];
  size_t k;
  if (cp < 0x80) { b[0] = (unsigned char)cp; k = 1; }
  else if (cp < 0x800) { b[0] = (unsigned char)(0xC0 | (cp >> 6)); b[1] = (unsigned char)(0x80 | (cp & 0x3F)); k = 2; }
  else if (cp < 0x10000) {
    b[0] = (unsigned char)(0xE0 | (cp >> 12)); b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    b[2] = (unsigned char)(0x80 | (cp & 0x3F)); k = 3;
  } else {
    b[0] = (unsigned char)(0xF0 | (cp >> 18)); b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F)); b[3] = (unsigned char)(0x80 | (cp & 0x3F)); k = 4;
  }
  for (size_t i = 0; i < k && *n + 1 < cap; ++i) out[(*n)++] = (char)b[i];
}

/* Decodes the string value of "key" into out (NUL-terminated); its length, or -1 when absent/malformed. */
static long json_string(const char* json, const char* key, char* out, size_t cap) {
  char pattern[128];
  snprintf(pattern, sizeof pattern, "\"%s\":\"", key);
  const char* p = json ? strstr(json, pattern) : NULL;
  if (!p || cap == 0) return -1;
  p += strlen(pattern);
  size_t n = 0;
  for (; *p && *p != '"'; ++p) {
    if (*p != '\\') {
      if (n + 1 < cap) out[n++] = *p;
      continue;
    }
    ++p;
    switch (*p) {
      case 'n': put_utf8('\n', out, &n, cap); break;
      case 't': put_utf8('\t', out, &n, cap); break;
      case 'r': put_utf8('\r', out, &n, cap); break;
      case 'b': put_utf8('\b', out, &n, cap); break;
      case 'f': put_utf8('\f', out, &n, cap); break;
      case 'u': {
        unsigned cp = 0;
        if (sscanf(p + 1, "%4x", &cp) != 1) return -1;
        p += 4;
        if (cp >= 0xD800 && cp < 0xDC00 && p[1] == '\\' && p[2] == 'u') {
          unsigned lo = 0;
          if (sscanf(p + 3, "%4x", &lo) == 1) { cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00); p += 6; }
        }
        put_utf8(cp, out, &n, cap);
        break;
      }
      case '\0': return -1;
      default: put_utf8((unsigned char)*p, out, &n, cap); break; /* \" \\ \/ */
    }
  }
  if (*p != '"') return -1;
  out[n] = '\0';
  return (long)n;
}

/* ---- the document ---- */

/* A few thousand words of simple story prose (the model's domain), deterministic, with one fact. */
static char* make_document(int words, unsigned seed) {
  static const char* names[] = {"Lily", "Tom", "Ben", "Sue", "Max", "Anna", "Tim", "Mia"};
  static const char* verbs[] = {"saw", "liked", "found", "wanted", "had", "played with", "looked at", "shared"};
  static const char* things[] = {"a red ball", "a big dog", "a small cat", "a blue car", "a happy bird",
                                 "a shiny toy", "a tall tree", "a warm cake"};
  static const char* ends[] = {"in the park", "at home", "by the river", "with mom", "in the garden",
                               "after lunch", "at school", "on the hill"};
  size_t cap = (size_t)words * 16 + 256, n = 0;
  char* s = malloc(cap);
  if (!s) return NULL;
  unsigned x = seed;
  int w = 0, sentence = 0;
  while (w < words) {
    const char* extra = "";
    if (++sentence == 97) extra = "The secret word of the day was banana. ";
    x = x * 1103515245u + 12345u;
    int r = (int)(x >> 8);
    int len = snprintf(s + n, cap - n, "%s%s %s %s %s. ", extra, names[r & 7], verbs[(r >> 3) & 7],
                       things[(r >> 6) & 7], ends[(r >> 9) & 7]);
    if (len < 0 || (size_t)len >= cap - n) break;
    n += (size_t)len;
    w += 8;
  }
  s[n] = '\0';
  return s;
}

/* ---- callbacks ---- */

typedef struct {
  char text[8192];
  size_t len;
  int pieces;
  int stop_after;          /* > 0: return 0 (stop) once this many pieces arrived */
  ilre_cancel* wait_for;   /* non-NULL: after the first piece, wait until another thread cancels it */
  volatile int first_seen; /* set once the first piece arrived (the canceller waits for it) */
  int progress_calls;
} collector;

static int on_token(const char* piece, size_t len, void* user) {
  collector* c = user;
  if (c->len + len < sizeof c->text) {
    memcpy(c->text + c->len, piece, len);
    c->len += len;
    c->text[c->len] = '\0';
  }
  ++c->pieces;
  if (c->wait_for && !c->first_seen) {
    __atomic_store_n(&c->first_seen, 1, __ATOMIC_SEQ_CST);
    /* Hold generation until the other thread's ilre_cancel_request lands (at most ~10 s). */
    for (int i = 0; i < 10000 && !ilre_cancel_requested(c->wait_for); ++i) {
      struct timespec ts = {0, 1000000};
      nanosleep(&ts, NULL);
    }
  }
  return c->stop_after > 0 && c->pieces >= c->stop_after ? 0 : 1;
}

static void on_progress(const char* phase, int64_t processed, int64_t total, int64_t tokens, double elapsed_ms,
                        void* user) {
  collector* c = user;
  (void)processed, (void)total, (void)tokens, (void)elapsed_ms;
  if (phase && *phase) ++c->progress_calls;
}

static void collector_init(collector* c) { memset(c, 0, sizeof *c); }

typedef struct {
  collector* c;
  ilre_cancel* cancel;
} canceller_args;

static void* canceller(void* p) {
  canceller_args* a = p;
  while (!__atomic_load_n(&a->c->first_seen, __ATOMIC_SEQ_CST)) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  ilre_cancel_request(a->cancel);
  return NULL;
}

typedef struct {
  ilre_engine* engine;
  const char* store;
  const char* question;
  int status;
  char* json;
} ask_args;

static void* ask_thread(void* p) {
  ask_args* a = p;
  a->status = ilre_ask(a->engine, a->store, a->question, NULL, NULL, NULL, NULL, &a->json, NULL);
  return NULL;
}

static int remove_entry(const char* path, const struct stat* sb, int flag, struct FTW* ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(path);
}

/* Asks and checks the streamed pieces against the answer JSON; returns the answer JSON (caller frees). */
static char* ask_checked(ilre_engine* e, const char* store, const char* question, collector* c) {
  char* json = NULL;
  char* err = NULL;
  int s = ilre_ask(e, store, question, on_token, on_progress, c, NULL, &json, &err);
  CHECK(s == ILRE_OK, "ask '%s': %s: %s", question, ilre_status_name(s), err ? err : "(no message)");
  CHECK(err == NULL, "error message set on success");
  ilre_string_free(err);
  if (s != ILRE_OK || !json) return json;
  static char text[8192];
  long n = json_string(json, "text", text, sizeof text);
  CHECK(n >= 0, "no \"text\" in %s", json);
  CHECK(c->pieces > 0, "no token callback (answer %s)", json);
  CHECK(n == (long)c->len && memcmp(text, c->text, c->len) == 0, "streamed '%s' != answer text '%s'", c->text, text);
  CHECK(json_int(json, "generated_tokens") == c->pieces, "generated_tokens %lld != %d pieces",
        json_int(json, "generated_tokens"), c->pieces);
  CHECK(json_int(json, "context_tokens") > 0, "context_tokens in %s", json);
  CHECK(json_int(json, "recalled") > 0 && json_int(json, "recalled") < json_int(json, "context_tokens"),
        "recalled in %s", json);
  CHECK(json_int(json, "prompt_tokens") > 0, "prompt_tokens in %s", json);
  CHECK(json_int(json, "layer") == 2, "layer in %s", json);
  CHECK(strstr(json, "\"spans\":[[") != NULL, "spans in %s", json);
  CHECK(strstr(json, "\"timings_ms\":{") != NULL, "timings_ms in %s", json);
  CHECK(c->progress_calls > 0, "no progress callback");
  return json;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s <stories260K-f32.gguf>\n", argv[0]);
    return 2;
  }
  const char* model = argv[1];
  char* err = NULL;
  char* json = NULL;
  int s;

  /* ---- static functions ---- */
  CHECK(strcmp(ilre_version(), ILRE_VERSION_STRING) == 0, "version %s vs header %s", ilre_version(),
        ILRE_VERSION_STRING);
  CHECK(strcmp(ilre_status_name(ILRE_OK), "ok") == 0, "%s", ilre_status_name(ILRE_OK));
  CHECK(strcmp(ilre_status_name(ILRE_E_CANCELLED), "cancelled") == 0, "%s", ilre_status_name(ILRE_E_CANCELLED));
  CHECK(strcmp(ilre_status_name(ILRE_E_INTERNAL), "internal") == 0, "%s", ilre_status_name(ILRE_E_INTERNAL));
  CHECK(strcmp(ilre_status_name(999), "unknown") == 0 && strcmp(ilre_status_name(-1), "unknown") == 0, "unknown");
  CHECK(ilre_set_log_level("loud") == ILRE_E_INVALID_ARGUMENT, "bad log level accepted");
  CHECK(ilre_set_log_level(NULL) == ILRE_E_INVALID_ARGUMENT, "NULL log level accepted");
  CHECK(ilre_set_log_level("warn") == ILRE_OK, "warn");
  ilre_string_free(NULL);
  ilre_engine_free(NULL);
  ilre_cancel_free(NULL);
  ilre_cancel_request(NULL);
  CHECK(ilre_cancel_requested(NULL) == 0, "NULL cancel requested");
  CHECK(ilre_engine_retrieval_layer(NULL) == -1, "layer of NULL engine");

  /* ---- opening: errors ---- */
  ilre_engine* e = (ilre_engine*)&err; /* garbage that must be overwritten with NULL */
  s = ilre_engine_open(model, NULL, NULL, 0, NULL, &err);
  CHECK(s == ILRE_E_INVALID_ARGUMENT && err && strstr(err, "NULL"), "NULL out: %d %s", s, err ? err : "");
  ilre_string_free(err);
  s = ilre_engine_open("/no/such/model.gguf", NULL, NULL, 0, &e, &err);
  CHECK(s != ILRE_OK && e == NULL && err && *err, "missing model: %s %s", ilre_status_name(s), err ? err : "");
  ilre_string_free(err);
  const char* bad_set[] = {"recall.budgett=5"};
  s = ilre_engine_open(model, NULL, bad_set, 1, &e, &err);
  CHECK(s == ILRE_E_INVALID_ARGUMENT && err && strstr(err, "recall.budgett"), "bad override: %s %s",
        ilre_status_name(s), err ? err : "");
  ilre_string_free(err);
  s = ilre_engine_open(model, NULL, NULL, 3, &e, &err);
  CHECK(s == ILRE_E_INVALID_ARGUMENT, "NULL overrides with n 3: %s", ilre_status_name(s));
  ilre_string_free(err);
  const char* null_set[] = {"decode.max_tokens=4", NULL};
  s = ilre_engine_open(model, NULL, null_set, 2, &e, &err);
  CHECK(s == ILRE_E_INVALID_ARGUMENT && err && strstr(err, "overrides[1]"), "NULL override: %s", err ? err : "");
  ilre_string_free(err);
  s = ilre_engine_open(model, "prefill: {window: [1, 2]}", NULL, 0, &e, &err);
  CHECK(s != ILRE_OK && e == NULL && err && strstr(err, "window"), "bad yaml: %s %s", ilre_status_name(s),
        err ? err : "");
  ilre_string_free(err);
  s = ilre_engine_open("", NULL, NULL, 0, &e, NULL); /* no message wanted: must not crash */
  CHECK(s == ILRE_E_INVALID_ARGUMENT && e == NULL, "empty model path: %s", ilre_status_name(s));

  /* ---- the engine ---- */
  const char* sets[] = {"prefill.layer=2",      "prefill.chunk=128",
                        "recall.budget=64",     "recall.keep_first=8",
                        "decode.max_tokens=12", "decode.stop_at_newline=false",
                        "model.threads=1"};
  e = NULL;
  s = ilre_engine_open(model, "recall:\n  keep_last: 8\n", sets, sizeof sets / sizeof sets[0], &e, &err);
  CHECK(s == ILRE_OK && e != NULL, "open: %s: %s", ilre_status_name(s), err ? err : "");
  ilre_string_free(err);
  err = NULL;
  if (!e) {
    fprintf(stderr, "%d of %d checks failed (no engine: stopping)\n", failures, checks);
    return 1;
  }
  CHECK(ilre_engine_retrieval_layer(e) == 2, "layer %d", ilre_engine_retrieval_layer(e));

  char tmpl[] = "/tmp/ilre_capi_XXXXXX";
  char* root = mkdtemp(tmpl);
  if (!root) {
    perror("mkdtemp");
    return 1;
  }
  char store[512], store2[512], missing[512], cancelled_store[512];
  snprintf(store, sizeof store, "%s/doc", root);
  snprintf(store2, sizeof store2, "%s/stream", root);
  snprintf(missing, sizeof missing, "%s/no-such-store", root);
  snprintf(cancelled_store, sizeof cancelled_store, "%s/cancelled", root);

  char* doc = make_document(3000, 7);
  char* more = make_document(1500, 11);
  CHECK(doc && more, "out of memory");
  if (!doc || !more) return 1;

  /* ---- ingest ---- */
  collector c;
  collector_init(&c);
  s = ilre_ingest_text(e, doc, strlen(doc), store, 0, on_progress, &c, NULL, &json, &err);
  CHECK(s == ILRE_OK && json, "ingest: %s: %s", ilre_status_name(s), err ? err : "");
  ilre_string_free(err);
  err = NULL;
  const long long tokens1 = json_int(json, "total_tokens");
  CHECK(tokens1 > 1000, "total_tokens %lld in %s", tokens1, json ? json : "");
  CHECK(json_int(json, "tokens_added") == tokens1, "tokens_added in %s", json ? json : "");
  CHECK(json_int(json, "bytes_read") == (long long)strlen(doc), "bytes_read in %s", json ? json : "");
  CHECK(json_int(json, "layer") == 2, "layer in %s", json ? json : "");
  CHECK(c.progress_calls > 0, "no ingest progress");
  printf("ingested %zu bytes: %s\n", strlen(doc), json ? json : "");
  ilre_string_free(json);
  json = NULL;

  /* ---- two asks, tokens streamed ---- */
  collector_init(&c);
  json = ask_checked(e, store, "What was the secret word of the day?", &c);
  printf("ask 1: %d pieces: '%s'\n  %s\n", c.pieces, c.text, json ? json : "");
  CHECK(json_int(json, "context_tokens") == tokens1, "context_tokens in %s", json ? json : "");
  char first_answer[8192];
  snprintf(first_answer, sizeof first_answer, "%s", c.text);
  ilre_string_free(json);
  collector_init(&c);
  json = ask_checked(e, store, "Who played with the big dog?", &c);
  printf("ask 2: %d pieces: '%s'\n", c.pieces, c.text);
  ilre_string_free(json);
  json = NULL;

  /* ---- concurrent asks on one engine give the sequential (greedy) answer ---- */
  {
    ask_args a[2] = {{e, store, "What was the secret word of the day?", -1, NULL},
                     {e, store, "What was the secret word of the day?", -1, NULL}};
    pthread_t t[2];
    for (int i = 0; i < 2; ++i) pthread_create(&t[i], NULL, ask_thread, &a[i]);
    for (int i = 0; i < 2; ++i) pthread_join(t[i], NULL);
    for (int i = 0; i < 2; ++i) {
      char text[8192];
      CHECK(a[i].status == ILRE_OK, "concurrent ask %d: %s", i, ilre_status_name(a[i].status));
      CHECK(json_string(a[i].json, "text", text, sizeof text) >= 0 && strcmp(text, first_answer) == 0,
            "concurrent ask %d: '%s' != '%s'", i, a[i].json ? text : "(none)", first_answer);
      ilre_string_free(a[i].json);
    }
  }

  /* ---- the callback stops generation: OK with the text so far ---- */
  collector_init(&c);
  c.stop_after = 2;
  s = ilre_ask(e, store, "What was the secret word of the day?", on_token, NULL, &c, NULL, &json, &err);
  CHECK(s == ILRE_OK && json, "stopped ask: %s: %s", ilre_status_name(s), err ? err : "");
  CHECK(c.pieces == 2 && json_int(json, "generated_tokens") == 2, "stopped after %d pieces: %s", c.pieces,
        json ? json : "");
  ilre_string_free(json);
  ilre_string_free(err);
  json = err = NULL;

  /* ---- cancel an ask from another thread while it generates ---- */
  {
    ilre_cancel* cancel = ilre_cancel_new();
    CHECK(cancel != NULL && ilre_cancel_requested(cancel) == 0, "new cancel");
    collector_init(&c);
    c.wait_for = cancel;
    canceller_args ca = {&c, cancel};
    pthread_t t;
    pthread_create(&t, NULL, canceller, &ca);
    json = (char*)1; /* must be reset to NULL on failure */
    s = ilre_ask(e, store, "What was the secret word of the day?", on_token, NULL, &c, cancel, &json, &err);
    pthread_join(t, NULL);
    CHECK(s == ILRE_E_CANCELLED, "cancelled ask: %s: %s", ilre_status_name(s), err ? err : "");
    CHECK(json == NULL, "answer JSON set on failure");
    CHECK(err && strstr(err, "cancel"), "cancel message: %s", err ? err : "(none)");
    CHECK(ilre_cancel_requested(cancel) == 1, "requested");
    CHECK(c.pieces >= 1 && c.pieces < 12, "%d pieces before the cancel", c.pieces);
    printf("cancelled ask after %d piece(s): %s\n", c.pieces, err ? err : "");
    ilre_string_free(err);
    err = NULL;
    /* One-shot: a later ingest with the same handle is cancelled at once. */
    s = ilre_ingest_text(e, doc, strlen(doc), cancelled_store, 0, NULL, NULL, cancel, &json, &err);
    CHECK(s == ILRE_E_CANCELLED && json == NULL, "ingest with a cancelled handle: %s: %s", ilre_status_name(s),
          err ? err : "");
    ilre_string_free(err);
    err = NULL;
    ilre_cancel_request(cancel); /* repeated: harmless */
    ilre_cancel_free(cancel);
  }

  /* ---- error paths: non-OK status with a message, never a crash ---- */
  s = ilre_ask(e, missing, "Who?", NULL, NULL, NULL, NULL, &json, &err);
  CHECK(s != ILRE_OK && s != ILRE_E_INTERNAL && json == NULL && err && *err, "missing store: %s: %s",
        ilre_status_name(s), err ? err : "(none)");
  printf("missing store -> %s: %s\n", ilre_status_name(s), err ? err : "");
  ilre_string_free(err);
  s = ilre_ask(e, store, "", NULL, NULL, NULL, NULL, &json, &err);
  CHECK(s == ILRE_E_INVALID_ARGUMENT && err && strstr(err, "empty"), "empty question: %s: %s", ilre_status_name(s),
        err ? err : "");
  ilre_string_free(err);
  s = ilre_ask(e, store, " \n\t ", NULL, NULL, NULL, NULL, NULL, NULL);
  CHECK(s == ILRE_E_INVALID_ARGUMENT, "blank question: %s", ilre_status_name(s));
  s = ilre_ask(NULL, store, "Who?", NULL, NULL, NULL, NULL, &json, &err);
  CHECK(s == ILRE_E_INVALID_ARGUMENT && err, "NULL engine: %s", ilre_status_name(s));
  ilre_string_free(err);
  s = ilre_ask(e, NULL, "Who?", NULL, NULL, NULL, NULL, &json, &err);
  CHECK(s == ILRE_E_INVALID_ARGUMENT && err, "NULL store: %s", ilre_status_name(s));
  ilre_string_free(err);
  s = ilre_ask(e, store, NULL, NULL, NULL, NULL, NULL, &json, &err);
  CHECK(s == ILRE_E_INVALID_ARGUMENT && err, "NULL question: %s", ilre_status_name(s));
  ilre_string_free(err);
  s = ilre_ingest_text(e, NULL, 5, store2, 0, NULL, NULL, NULL, &json, &err);
  CHECK(s == ILRE_E_INVALID_ARGUMENT && err, "NULL text: %s", ilre_status_name(s));
  ilre_string_free(err);
  s = ilre_ingest_text(e, doc, 0, store2, 0, NULL, NULL, NULL, &json, &err);
  CHECK(s == ILRE_E_INVALID_ARGUMENT && err && strstr(err, "empty"), "empty text: %s", err ? err : "");
  ilre_string_free(err);
  s = ilre_ingest_text(e, doc, 10, store2, 0x80, NULL, NULL, NULL, &json, &err);
  CHECK(s == ILRE_E_INVALID_ARGUMENT && err && strstr(err, "flags"), "bad flags: %s", err ? err : "");
  ilre_string_free(err);
  s = ilre_ingest_text(NULL, doc, 10, store2, 0, NULL, NULL, NULL, &json, &err);
  CHECK(s == ILRE_E_INVALID_ARGUMENT && err, "NULL engine ingest: %s", ilre_status_name(s));
  ilre_string_free(err);
  s = ilre_ingest_text(e, doc, 10, NULL, 0, NULL, NULL, NULL, &json, &err);
  CHECK(s == ILRE_E_INVALID_ARGUMENT && err, "NULL store ingest: %s", ilre_status_name(s));
  ilre_string_free(err);
  s = ilre_ingest_file(e, NULL, store2, 0, NULL, NULL, NULL, &json, &err);
  CHECK(s == ILRE_E_INVALID_ARGUMENT && err, "NULL path: %s", ilre_status_name(s));
  ilre_string_free(err);
  s = ilre_ingest_file(e, "/no/such/file.txt", store2, 0, NULL, NULL, NULL, &json, &err);
  CHECK(s != ILRE_OK && json == NULL && err && strstr(err, "/no/such/file.txt"), "missing file: %s: %s",
        ilre_status_name(s), err ? err : "");
  printf("missing file -> %s: %s\n", ilre_status_name(s), err ? err : "");
  ilre_string_free(err);
  s = ilre_ingest_text(e, doc, strlen(doc), store, 0, NULL, NULL, NULL, &json, &err);
  CHECK(s != ILRE_OK && err && strstr(err, "exists"), "ingest over a store: %s: %s", ilre_status_name(s),
        err ? err : "");
  ilre_string_free(err);
  s = ilre_ingest_text(e, more, strlen(more), missing, ILRE_INGEST_APPEND, NULL, NULL, NULL, &json, &err);
  CHECK(s != ILRE_OK && err, "append to a missing store: %s", ilre_status_name(s));
  ilre_string_free(err);
  s = ilre_store_info(e, missing, &json, &err);
  CHECK(s != ILRE_OK && json == NULL && err, "info of a missing store: %s", ilre_status_name(s));
  ilre_string_free(err);
  err = NULL;

  /* ---- append a second part: the token count grows and asks see it ---- */
  s = ilre_ingest_text(e, more, strlen(more), store, ILRE_INGEST_APPEND, NULL, NULL, NULL, &json, &err);
  CHECK(s == ILRE_OK, "append: %s: %s", ilre_status_name(s), err ? err : "");
  ilre_string_free(err);
  err = NULL;
  const long long tokens2 = json_int(json, "total_tokens");
  CHECK(tokens2 > tokens1 && json_int(json, "tokens_added") == tokens2 - tokens1, "append: %lld -> %lld (%s)",
        tokens1, tokens2, json ? json : "");
  printf("appended %zu bytes: %lld -> %lld tokens\n", strlen(more), tokens1, tokens2);
  ilre_string_free(json);
  s = ilre_store_info(e, store, &json, &err);
  CHECK(s == ILRE_OK && json_int(json, "tokens") == tokens2, "store info: %s %s", json ? json : "", err ? err : "");
  printf("store: %s\n", json ? json : "");
  ilre_string_free(json);
  ilre_string_free(err);
  err = NULL;
  collector_init(&c);
  json = ask_checked(e, store, "What was the secret word of the day?", &c);
  CHECK(json_int(json, "context_tokens") == tokens2, "context after append in %s", json ? json : "");
  ilre_string_free(json);

  /* ---- a document stream in parts cut mid-word (KEEP_OPEN) gives the tokens of the whole text ---- */
  {
    char whole_store[512];
    snprintf(whole_store, sizeof whole_store, "%s/whole", root);
    s = ilre_ingest_text(e, more, strlen(more), whole_store, 0, NULL, NULL, NULL, &json, &err);
    const long long whole = json_int(json, "total_tokens");
    CHECK(s == ILRE_OK && whole > 0, "whole: %s", err ? err : "");
    ilre_string_free(json);
    ilre_string_free(err);
    err = NULL;
    const size_t cut = strlen(more) / 2 + 3; /* somewhere inside a word */
    s = ilre_ingest_text(e, more, cut, store2, ILRE_INGEST_KEEP_OPEN, NULL, NULL, NULL, NULL, &err);
    CHECK(s == ILRE_OK, "stream part 1: %s", err ? err : "");
    ilre_string_free(err);
    err = NULL;
    s = ilre_store_info(e, store2, &json, NULL);
    CHECK(s == ILRE_OK && json_bool(json, "open") == 1, "open stream: %s", json ? json : "");
    ilre_string_free(json);
    s = ilre_ingest_text(e, more + cut, strlen(more) - cut, store2, ILRE_INGEST_APPEND, NULL, NULL, NULL, &json, &err);
    CHECK(s == ILRE_OK && json_int(json, "total_tokens") == whole, "stream parts give %lld tokens, whole %lld: %s",
          json_int(json, "total_tokens"), whole, err ? err : "");
    ilre_string_free(json);
    ilre_string_free(err);
    err = NULL;
  }

  ilre_engine_free(e);
  free(doc);
  free(more);
  nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);

  if (failures) {
    fprintf(stderr, "%d of %d checks failed\n", failures, checks);
    return 1;
  }
  printf("all %d checks passed\n", checks);
  return 0;
}
