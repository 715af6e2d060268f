// The C API (include/ilre/ilre.h) over ilre::Engine. Every function is noexcept and catches everything: an
// exception, or a Result error, becomes a status code and a malloc'ed message; no C++ type crosses the ABI.
#include "ilre/ilre.h"
#include "api/json.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <utility>

#include "ilre/config.h"
#include "ilre/engine.h"
#include "ilre/error.h"

struct ilre_engine {
  std::shared_ptr<ilre::Engine> engine;
};

struct ilre_cancel {
  ilre::CancelHandle handle;
};

namespace {

using ilre::api::to_json;

using ilre::errc;

// The C enum mirrors ilre::errc number for number.
#define ILRE_SAME_CODE(c_code, cxx_code) \
  static_assert(static_cast<int>(c_code) == static_cast<int>(errc::cxx_code), #c_code " != errc::" #cxx_code)
ILRE_SAME_CODE(ILRE_OK, ok);
ILRE_SAME_CODE(ILRE_E_INVALID_ARGUMENT, invalid_argument);
ILRE_SAME_CODE(ILRE_E_BAD_GGUF, bad_gguf);
ILRE_SAME_CODE(ILRE_E_UNSUPPORTED, unsupported);
ILRE_SAME_CODE(ILRE_E_BAD_UTF8, bad_utf8);
ILRE_SAME_CODE(ILRE_E_BAD_JSON, bad_json);
ILRE_SAME_CODE(ILRE_E_IO_FAILED, io_failed);
ILRE_SAME_CODE(ILRE_E_DISK_FULL, disk_full);
ILRE_SAME_CODE(ILRE_E_CHECKSUM_MISMATCH, checksum_mismatch);
ILRE_SAME_CODE(ILRE_E_MODEL_MISMATCH, model_mismatch);
ILRE_SAME_CODE(ILRE_E_CANCELLED, cancelled);
ILRE_SAME_CODE(ILRE_E_QUEUE_CLOSED, queue_closed);
ILRE_SAME_CODE(ILRE_E_OUT_OF_RANGE, out_of_range);
ILRE_SAME_CODE(ILRE_E_INTERNAL, internal);
ILRE_SAME_CODE(ILRE_E_NOT_FOUND, not_found);
#undef ILRE_SAME_CODE
constexpr int kLastStatus = ILRE_E_NOT_FOUND;

// A malloc'ed copy (the caller frees it with ilre_string_free); NULL if out of memory.
char* copy_string(std::string_view s) noexcept {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (!out) return nullptr;
  if (!s.empty()) std::memcpy(out, s.data(), s.size());
  out[s.size()] = '\0';
  return out;
}

int report(char** error_message, errc code, std::string_view message) noexcept {
  if (error_message) *error_message = copy_string(message);
  return static_cast<int>(code);
}

int report(char** error_message, const ilre::Error& e) noexcept { return report(error_message, e.code, e.message); }

// Runs fn (which returns a status and may fill outputs) with every exception turned into a status.
template <class Fn>
int guarded(char** error_message, Fn&& fn) noexcept {
  try {
    return fn();
  } catch (const ilre::Exception& e) {
    return report(error_message, e.error());
  } catch (const std::bad_alloc&) {
    return report(error_message, errc::internal, "out of memory");
  } catch (const std::exception& e) {
    return report(error_message, errc::internal, e.what());
  } catch (...) {
    return report(error_message, errc::internal, "unknown exception");
  }
}

void clear(char** p) noexcept {
  if (p) *p = nullptr;
}

// JSON text for the caller; invalid UTF-8 (a document path, a cut byte token) becomes U+FFFD.
int put_json(char** out, const nlohmann::json& j, char** error_message) {
  if (!out) return ILRE_OK;
  const std::string text = ilre::api::dump(j);
  *out = copy_string(text);
  if (!*out) return report(error_message, errc::internal, "out of memory");
  return ILRE_OK;
}

ilre::ProgressFn progress_fn(ilre_progress_fn fn, void* user) {
  if (!fn) return {};
  return [fn, user](const ilre::Progress& p) {
    fn(p.phase.c_str(), p.processed, p.total, p.tokens, p.elapsed_ms, user);
  };
}

ilre::IngestOptions ingest_options(unsigned flags, ilre_progress_fn on_progress, void* user, ilre_cancel* cancel) {
  ilre::IngestOptions o;
  o.append = (flags & ILRE_INGEST_APPEND) != 0;
  o.keep_open = (flags & ILRE_INGEST_KEEP_OPEN) != 0;
  o.on_progress = progress_fn(on_progress, user);
  if (cancel) o.cancel = cancel->handle;
  return o;
}

constexpr unsigned kIngestFlags = ILRE_INGEST_APPEND | ILRE_INGEST_KEEP_OPEN;

// The checks every ingest shares; ILRE_OK when the arguments are usable.
int check_ingest(ilre_engine* engine, const char* store_dir, unsigned flags, char** error_message) noexcept {
  if (!engine) return report(error_message, errc::invalid_argument, "engine is NULL");
  if (!store_dir) return report(error_message, errc::invalid_argument, "store_dir is NULL");
  if (!*store_dir) return report(error_message, errc::invalid_argument, "store_dir is empty");
  if (flags & ~kIngestFlags) {
    char message[64];
    std::snprintf(message, sizeof message, "unknown ingest flags 0x%x", flags & ~kIngestFlags);
    return report(error_message, errc::invalid_argument, message);
  }
  return ILRE_OK;
}

int finish_ingest(const ilre::Result<ilre::IngestReport>& r, char** report_json, char** error_message) {
  if (!r) return report(error_message, r.error());
  return put_json(report_json, to_json(*r), error_message);
}

}  // namespace

extern "C" {

ILRE_C_API const char* ilre_version(void) ILRE_NOEXCEPT { return ILRE_VERSION_STRING; }

ILRE_C_API const char* ilre_status_name(int status) ILRE_NOEXCEPT {
  if (status < 0 || status > kLastStatus) return "unknown";
  // errc_name returns views of string literals, so data() is NUL-terminated and static.
  return ilre::errc_name(static_cast<errc>(status)).data();
}

ILRE_C_API void ilre_string_free(char* s) ILRE_NOEXCEPT { std::free(s); }

ILRE_C_API int ilre_set_log_level(const char* level) ILRE_NOEXCEPT {
  return guarded(nullptr, [&]() -> int {
    if (!level) return ILRE_E_INVALID_ARGUMENT;
    const std::string_view name(level);
    // spdlog::level::from_str maps unknown names to "off"; only accept the real ones.
    static constexpr std::string_view kNames[] = {"trace", "debug", "info", "warn", "error", "critical", "off"};
    for (std::string_view n : kNames) {
      if (n == name) {
        spdlog::set_level(spdlog::level::from_str(std::string(name)));
        return ILRE_OK;
      }
    }
    return ILRE_E_INVALID_ARGUMENT;
  });
}

ILRE_C_API int ilre_engine_open(const char* model_path_or_null, const char* config_yaml_or_null,
                                const char* const* overrides, size_t n_overrides, ilre_engine** out,
                                char** error_message) ILRE_NOEXCEPT {
  clear(error_message);
  if (out) *out = nullptr;
  return guarded(error_message, [&]() -> int {
    if (!out) return report(error_message, errc::invalid_argument, "out (the ilre_engine** result) is NULL");
    if (n_overrides > 0 && !overrides) {
      return report(error_message, errc::invalid_argument,
                    "overrides is NULL but n_overrides is " + std::to_string(n_overrides));
    }
    ilre::Config cfg;
    if (config_yaml_or_null && *config_yaml_or_null) {
      auto parsed = ilre::parse_config(config_yaml_or_null, "<config_yaml>");
      if (!parsed) return report(error_message, parsed.error());
      cfg = std::move(*parsed);
    }
    for (size_t i = 0; i < n_overrides; ++i) {
      if (!overrides[i]) {
        return report(error_message, errc::invalid_argument, "overrides[" + std::to_string(i) + "] is NULL");
      }
      if (auto r = ilre::apply_override(cfg, overrides[i]); !r) return report(error_message, r.error());
    }
    if (model_path_or_null) {
      if (!*model_path_or_null) {
        return report(error_message, errc::invalid_argument, "model path is empty (pass NULL for the lookup)");
      }
      cfg.model.path = model_path_or_null;
    }
    // Engine::open validates the whole config (overrides of coupled keys are applied one at a time).
    auto engine = ilre::Engine::open(std::move(cfg));
    if (!engine) return report(error_message, engine.error());
    *out = new ilre_engine{std::move(*engine)};
    return ILRE_OK;
  });
}

ILRE_C_API void ilre_engine_free(ilre_engine* engine) ILRE_NOEXCEPT {
  // Engine's destructor joins its threads; nothing it does is expected to throw, but nothing may escape.
  try {
    delete engine;
  } catch (...) {
  }
}

ILRE_C_API int ilre_engine_retrieval_layer(const ilre_engine* engine) ILRE_NOEXCEPT {
  if (!engine) return -1;
  try {
    return engine->engine->retrieval_layer();
  } catch (...) {
    return -1;
  }
}

ILRE_C_API int ilre_ingest_file(ilre_engine* engine, const char* path, const char* store_dir, unsigned flags,
                                ilre_progress_fn on_progress, void* user, ilre_cancel* cancel_or_null,
                                char** report_json, char** error_message) ILRE_NOEXCEPT {
  clear(error_message);
  clear(report_json);
  return guarded(error_message, [&]() -> int {
    if (int s = check_ingest(engine, store_dir, flags, error_message)) return s;
    if (!path) return report(error_message, errc::invalid_argument, "path is NULL");
    if (!*path) return report(error_message, errc::invalid_argument, "path is empty");
    auto r = engine->engine->ingest_file(path, store_dir, ingest_options(flags, on_progress, user, cancel_or_null));
    return finish_ingest(r, report_json, error_message);
  });
}

ILRE_C_API int ilre_ingest_text(ilre_engine* engine, const char* text, size_t len, const char* store_dir,
                                unsigned flags, ilre_progress_fn on_progress, void* user,
                                ilre_cancel* cancel_or_null, char** report_json, char** error_message) ILRE_NOEXCEPT {
  clear(error_message);
  clear(report_json);
  return guarded(error_message, [&]() -> int {
    if (int s = check_ingest(engine, store_dir, flags, error_message)) return s;
    if (!text && len > 0) {
      return report(error_message, errc::invalid_argument, "text is NULL but len is " + std::to_string(len));
    }
    if (len == 0) return report(error_message, errc::invalid_argument, "document is empty (len 0)");
    auto r = engine->engine->ingest_text(std::string(text, len), store_dir,
                                         ingest_options(flags, on_progress, user, cancel_or_null));
    return finish_ingest(r, report_json, error_message);
  });
}

ILRE_C_API int ilre_store_info(const ilre_engine* engine, const char* store_dir, char** store_json,
                               char** error_message) ILRE_NOEXCEPT {
  clear(error_message);
  clear(store_json);
  return guarded(error_message, [&]() -> int {
    if (!engine) return report(error_message, errc::invalid_argument, "engine is NULL");
    if (!store_dir) return report(error_message, errc::invalid_argument, "store_dir is NULL");
    auto s = engine->engine->open_store(store_dir);
    if (!s) return report(error_message, s.error());
    return put_json(store_json, to_json(*s), error_message);
  });
}

ILRE_C_API int ilre_ask(ilre_engine* engine, const char* store_dir, const char* question, ilre_token_fn on_token,
                        ilre_progress_fn on_progress, void* user, ilre_cancel* cancel_or_null, char** answer_json,
                        char** error_message) ILRE_NOEXCEPT {
  clear(error_message);
  clear(answer_json);
  return guarded(error_message, [&]() -> int {
    if (!engine) return report(error_message, errc::invalid_argument, "engine is NULL");
    if (!store_dir) return report(error_message, errc::invalid_argument, "store_dir is NULL");
    if (!question) return report(error_message, errc::invalid_argument, "question is NULL");
    ilre::AskOptions o;
    o.on_progress = progress_fn(on_progress, user);
    if (on_token) {
      o.on_token = [on_token, user](std::string_view piece) { return on_token(piece.data(), piece.size(), user) != 0; };
    }
    if (cancel_or_null) o.cancel = cancel_or_null->handle;
    auto a = engine->engine->ask(std::string(store_dir), std::string(question), std::move(o));
    if (!a) return report(error_message, a.error());
    return put_json(answer_json, to_json(*a), error_message);
  });
}

ILRE_C_API ilre_cancel* ilre_cancel_new(void) ILRE_NOEXCEPT {
  try {
    return new ilre_cancel{};
  } catch (...) {
    return nullptr;
  }
}

ILRE_C_API void ilre_cancel_request(ilre_cancel* cancel) ILRE_NOEXCEPT {
  if (!cancel) return;
  try {
    cancel->handle.cancel("cancelled by ilre_cancel_request");
  } catch (...) {
  }
}

ILRE_C_API int ilre_cancel_requested(const ilre_cancel* cancel) ILRE_NOEXCEPT {
  if (!cancel) return 0;
  try {
    return cancel->handle.cancelled() ? 1 : 0;
  } catch (...) {
    return 0;
  }
}

ILRE_C_API void ilre_cancel_free(ilre_cancel* cancel) ILRE_NOEXCEPT { delete cancel; }

}  // extern "C"
