#include "ilre/error.h"

namespace ilre {

std::string_view errc_name(errc code) noexcept {
  switch (code) {
    case errc::ok: return "ok";
    case errc::invalid_argument: return "invalid_argument";
    case errc::bad_gguf: return "bad_gguf";
    case errc::unsupported: return "unsupported";
    case errc::bad_utf8: return "bad_utf8";
    case errc::bad_json: return "bad_json";
    case errc::io_failed: return "io_failed";
    case errc::disk_full: return "disk_full";
    case errc::checksum_mismatch: return "checksum_mismatch";
    case errc::model_mismatch: return "model_mismatch";
    case errc::cancelled: return "cancelled";
    case errc::queue_closed: return "queue_closed";
    case errc::out_of_range: return "out_of_range";
    case errc::internal: return "internal";
    case errc::not_found: return "not_found";
  }
  return "unknown";
}

std::string Error::what() const { return std::string(errc_name(code)) + ": " + message; }

Exception::Exception(Error error) : error_(std::move(error)), what_(error_.what()) {}

}  // namespace ilre
