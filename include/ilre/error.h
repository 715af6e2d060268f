// Error model of ilre.
//
// Inside a library (model loading, kernels) errors are thrown as ilre::Exception because deep call chains
// would otherwise thread a result through every helper. At every public-API, stage and actor boundary the
// exception is caught and turned into a Result<T> so no exception crosses those boundaries.
// Thread-safety: Error and Result are plain values; errc_name is reentrant.
#pragma once

#include <exception>
#include <string>
#include <string_view>
#include <utility>

#include <tl/expected.hpp>

#include "ilre/export.h"

namespace ilre {

enum class errc {
  ok = 0,
  invalid_argument,   // a caller passed something unusable (bad flag value, empty question, ...)
  bad_gguf,           // malformed, truncated or hostile model file
  unsupported,        // well-formed input that ilre does not implement (tensor type, architecture, ...)
  bad_utf8,           // text that is not valid UTF-8 where that matters
  bad_json,           // malformed JSON / YAML / config
  io_failed,          // open/read/write/fsync/rename failed
  disk_full,          // ENOSPC / EDQUOT while writing
  checksum_mismatch,  // on-disk data does not match its recorded checksum
  model_mismatch,     // a store made by a different model or l_R
  cancelled,          // the user or a deadline stopped the work
  queue_closed,       // a pipeline queue was closed while an actor waited on it
  out_of_range,       // a position, token id or size outside what the model/store allows
  internal,           // a broken invariant inside ilre: always a bug
  not_found,          // a named thing (a document, a store) does not exist
};

ILRE_API std::string_view errc_name(errc code) noexcept;

struct ILRE_API Error {
  errc code = errc::internal;
  std::string message;

  // "bad_gguf: tensor 'blk.0.attn_q.weight' data extends past end of file"
  std::string what() const;
};

template <class T>
using Result = tl::expected<T, Error>;

inline tl::unexpected<Error> make_error(errc code, std::string message) {
  return tl::unexpected<Error>(Error{code, std::move(message)});
}

class ILRE_API Exception : public std::exception {
 public:
  explicit Exception(Error error);
  Exception(errc code, std::string message) : Exception(Error{code, std::move(message)}) {}
  const char* what() const noexcept override { return what_.c_str(); }
  const Error& error() const noexcept { return error_; }
  errc code() const noexcept { return error_.code; }

 private:
  Error error_;
  std::string what_;
};

// Runs fn and converts any exception into an Error, for use at API boundaries.
template <class Fn>
auto catch_to_result(Fn&& fn) -> Result<decltype(fn())> {
  try {
    if constexpr (std::is_void_v<decltype(fn())>) {
      fn();
      return {};
    } else {
      return fn();
    }
  } catch (const Exception& e) {
    return tl::unexpected<Error>(e.error());
  } catch (const std::bad_alloc&) {
    return make_error(errc::internal, "out of memory");
  } catch (const std::exception& e) {
    return make_error(errc::internal, e.what());
  }
}

}  // namespace ilre
