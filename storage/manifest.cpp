#include "storage/manifest.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <limits>
#include <type_traits>
#include <utility>

#include "storage/checksum.h"
#include "storage/file_io.h"

namespace ilre::storage {

using nlohmann::json;

namespace {

bool all_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

bool has_prefix_suffix(std::string_view name, std::string_view prefix, std::string_view suffix) {
  return name.size() > prefix.size() + suffix.size() && name.substr(0, prefix.size()) == prefix &&
         name.substr(name.size() - suffix.size()) == suffix &&
         all_digits(name.substr(prefix.size(), name.size() - prefix.size() - suffix.size()));
}

// The content the checksum covers: the manifest object without "checksum", compact, keys sorted (nlohmann's
// object is a std::map), so whitespace or key order changes in the file do not matter but every value does.
uint32_t content_checksum(json j) {
  j.erase("checksum");
  const std::string canon = j.dump();
  return crc32c(canon.data(), canon.size());
}

json segment_to_json(const SegmentInfo& s) {
  return json{{"file", s.file},
              {"first_pos", s.first_pos},
              {"n_tokens", s.n_tokens},
              {"raw_key_bytes", s.raw_key_bytes},
              {"stored_key_bytes", s.stored_key_bytes},
              {"stored_token_bytes", s.stored_token_bytes},
              {"stored_bytes", s.stored_bytes},
              {"shuffle", std::string(shuffle_name(s.shuffle))},
              {"zstd_level", s.zstd_level},
              {"checksum", checksum_to_string(s.checksum)},
              {"prefix_checksum", checksum_to_string(s.prefix_checksum)}};
}

// Field access that throws a message naming the field; caught in manifest_from_text.
struct FieldError {
  std::string message;
};

template <class T>
T field(const json& j, const char* name) {
  auto it = j.find(name);
  if (it == j.end()) throw FieldError{std::string("missing field '") + name + "'"};
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    // nlohmann's get<int>() static_casts a float (UB when out of range, e.g. 1e22 or a too long integer
    // literal, which parses as a double) and truncates an integer that T cannot hold: refuse both.
    const bool fits = it->is_number_unsigned()  ? std::in_range<T>(it->template get<uint64_t>())
                      : it->is_number_integer() ? std::in_range<T>(it->template get<int64_t>())
                                                : false;
    if (!fits) throw FieldError{std::string("field '") + name + "' is not an integer in range"};
  }
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    throw FieldError{std::string("field '") + name + "' has the wrong type"};
  }
}

uint32_t checksum_field(const json& j, const char* name) {
  uint32_t v = 0;
  if (!checksum_from_string(field<std::string>(j, name), &v)) {
    throw FieldError{std::string("field '") + name + "' is not a crc32c:xxxxxxxx checksum"};
  }
  return v;
}

}  // namespace

std::string segment_file_name(size_t index) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "segments/seg-%06zu.ilk", index);
  return buf;
}

std::string state_file_name(int64_t generation) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "state-%06lld.bin", static_cast<long long>(generation));
  return buf;
}

bool is_segment_file_name(std::string_view name) { return has_prefix_suffix(name, "seg-", ".ilk"); }
bool is_state_file_name(std::string_view name) { return has_prefix_suffix(name, "state-", ".bin"); }

std::string now_iso8601() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string manifest_to_text(const Manifest& m) {
  json segs = json::array();
  for (const SegmentInfo& s : m.segments) segs.push_back(segment_to_json(s));
  json state = nullptr;
  if (m.state) {
    state = json{{"file", m.state->file},
                 {"generation", m.state->generation},
                 {"size", m.state->size},
                 {"checksum", checksum_to_string(m.state->checksum)}};
  }
  json j{{"format", std::string(kFormatName)},
         {"format_version", kManifestFormatVersion},
         {"created_at", m.created_at},
         {"updated_at", m.updated_at},
         {"model", {{"fingerprint", m.meta.model_fingerprint}, {"name", m.meta.model_name}}},
         {"retrieval_layer", m.meta.retrieval_layer},
         {"n_kv_heads", m.meta.n_kv_heads},
         {"head_dim", m.meta.head_dim},
         {"key_width", m.meta.key_width()},
         {"key_dtype", std::string(key_dtype_name(m.meta.dtype))},
         {"compression",
          {{"codec", "zstd"},
           {"level", m.zstd_level},
           {"frame_checksums", true},
           {"shuffle_mode", std::string(shuffle_mode_name(m.shuffle_mode))}}},
         {"n_tokens", m.n_tokens},
         {"segments", std::move(segs)},
         {"state", std::move(state)},
         {"state_generation", m.state_generation},
         {"config", m.meta.config},
         {"notes", m.meta.notes}};
  // Only shards have it, so a whole document's manifest is the same as before shards existed.
  if (m.meta.first_pos != 0) j["first_pos"] = m.meta.first_pos;
  j["checksum"] = checksum_to_string(content_checksum(j));
  return j.dump(1) + "\n";
}

Result<Manifest> manifest_from_text(std::string_view text, const std::string& path) {
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return make_error(errc::checksum_mismatch, path + " is corrupt: not a JSON object (truncated or edited?)");
  }
  // The version comes first: a newer writer may checksum differently.
  if (auto it = j.find("format_version"); it != j.end() && it->is_number_integer() &&
                                           it->get<int64_t>() > kManifestFormatVersion) {
    return make_error(errc::unsupported, path + " has format version " + std::to_string(it->get<int64_t>()) +
                                             "; this build of ilre reads up to version " +
                                             std::to_string(kManifestFormatVersion));
  }
  auto cs = j.find("checksum");
  uint32_t recorded = 0;
  if (cs == j.end() || !cs->is_string() || !checksum_from_string(cs->get<std::string>(), &recorded)) {
    return make_error(errc::checksum_mismatch, path + " has no valid \"checksum\" field");
  }
  if (const uint32_t actual = content_checksum(j); actual != recorded) {
    return make_error(errc::checksum_mismatch, path + ": checksum mismatch (recorded " +
                                                   checksum_to_string(recorded) + ", content has " +
                                                   checksum_to_string(actual) + "): the manifest was modified");
  }

  Manifest m;
  try {
    if (field<std::string>(j, "format") != kFormatName) throw FieldError{"not an ilre-key-store manifest"};
    if (field<int64_t>(j, "format_version") < 1) throw FieldError{"bad format_version"};
    m.created_at = field<std::string>(j, "created_at");
    m.updated_at = field<std::string>(j, "updated_at");
    const json& model = j.at("model");
    m.meta.model_fingerprint = field<std::string>(model, "fingerprint");
    m.meta.model_name = field<std::string>(model, "name");
    m.meta.retrieval_layer = field<int32_t>(j, "retrieval_layer");
    m.meta.n_kv_heads = field<int32_t>(j, "n_kv_heads");
    m.meta.head_dim = field<int32_t>(j, "head_dim");
    // key_width() is an int32 product: it must not overflow.
    const int64_t key_width = static_cast<int64_t>(m.meta.n_kv_heads) * m.meta.head_dim;
    if (m.meta.n_kv_heads <= 0 || m.meta.head_dim <= 0 || key_width > std::numeric_limits<int32_t>::max() ||
        field<int64_t>(j, "key_width") != key_width) {
      throw FieldError{"key_width must equal n_kv_heads * head_dim > 0 (at most 2^31 - 1)"};
    }
    auto dtype = key_dtype_from_name(field<std::string>(j, "key_dtype"));
    if (!dtype) throw FieldError{"unknown key_dtype"};
    m.meta.dtype = *dtype;
    const json& comp = j.at("compression");
    if (field<std::string>(comp, "codec") != "zstd") throw FieldError{"unknown compression codec"};
    m.zstd_level = field<int32_t>(comp, "level");
    const std::string mode = field<std::string>(comp, "shuffle_mode");
    if (mode == "auto") m.shuffle_mode = ShuffleMode::automatic;
    else if (mode == "none") m.shuffle_mode = ShuffleMode::none;
    else if (mode == "bytes") m.shuffle_mode = ShuffleMode::bytes;
    else if (mode == "channel_bytes") m.shuffle_mode = ShuffleMode::channel_bytes;
    else throw FieldError{"unknown shuffle_mode"};
    m.n_tokens = field<int64_t>(j, "n_tokens");
    m.meta.first_pos = j.contains("first_pos") ? field<int64_t>(j, "first_pos") : 0;
    if (m.meta.first_pos < 0) throw FieldError{"first_pos must be >= 0"};
    m.meta.config = j.at("config");
    m.meta.notes = j.at("notes");
    if (!m.meta.config.is_object() || !m.meta.notes.is_object()) throw FieldError{"config and notes must be objects"};

    const json& segs = j.at("segments");
    if (!segs.is_array()) throw FieldError{"segments must be an array"};
    int64_t next = m.meta.first_pos;
    const uint64_t width = static_cast<uint64_t>(m.meta.key_width());
    for (size_t i = 0; i < segs.size(); ++i) {
      const json& sj = segs[i];
      SegmentInfo s;
      s.file = field<std::string>(sj, "file");
      // Only our own names: a manifest must never make a reader open ../../something.
      if (s.file != segment_file_name(i)) {
        throw FieldError{"segment " + std::to_string(i) + " is named '" + s.file + "', expected '" +
                         segment_file_name(i) + "'"};
      }
      s.first_pos = field<int64_t>(sj, "first_pos");
      s.n_tokens = field<int64_t>(sj, "n_tokens");
      s.raw_key_bytes = field<uint64_t>(sj, "raw_key_bytes");
      s.stored_key_bytes = field<uint64_t>(sj, "stored_key_bytes");
      s.stored_token_bytes = field<uint64_t>(sj, "stored_token_bytes");
      s.stored_bytes = field<uint64_t>(sj, "stored_bytes");
      auto sh = shuffle_from_name(field<std::string>(sj, "shuffle"));
      if (!sh) throw FieldError{"segment " + s.file + ": unknown shuffle"};
      s.shuffle = *sh;
      s.zstd_level = field<int32_t>(sj, "zstd_level");
      s.checksum = checksum_field(sj, "checksum");
      s.prefix_checksum = checksum_field(sj, "prefix_checksum");
      if (s.first_pos != next) {
        throw FieldError{"segment " + s.file + " starts at position " + std::to_string(s.first_pos) +
                         ", expected " + std::to_string(next)};
      }
      // n_tokens is bounded so that end_pos() and raw_key_bytes cannot overflow.
      if (s.n_tokens <= 0 || s.n_tokens > std::numeric_limits<int64_t>::max() - next ||
          static_cast<uint64_t>(s.n_tokens) > std::numeric_limits<uint64_t>::max() / 2 / width ||
          s.raw_key_bytes != static_cast<uint64_t>(s.n_tokens) * width * 2 ||
          s.stored_bytes != 64 + s.stored_key_bytes + s.stored_token_bytes) {
        throw FieldError{"segment " + s.file + ": inconsistent sizes"};
      }
      next = s.end_pos();
      m.segments.push_back(std::move(s));
    }
    if (next - m.meta.first_pos != m.n_tokens) {
      throw FieldError{"n_tokens is " + std::to_string(m.n_tokens) + " but the segments hold " +
                       std::to_string(next - m.meta.first_pos)};
    }
    m.state_generation = field<int64_t>(j, "state_generation");
    const json& st = j.at("state");
    if (!st.is_null()) {
      StateInfo s;
      s.file = field<std::string>(st, "file");
      s.generation = field<int64_t>(st, "generation");
      s.size = field<uint64_t>(st, "size");
      s.checksum = checksum_field(st, "checksum");
      if (s.file != state_file_name(s.generation) || s.generation > m.state_generation) {
        throw FieldError{"state file '" + s.file + "' does not match its generation"};
      }
      m.state = std::move(s);
    }
  } catch (const FieldError& e) {
    return make_error(errc::bad_json, path + ": " + e.message);
  } catch (const json::exception& e) {
    return make_error(errc::bad_json, path + ": " + e.what());
  }
  return m;
}

Result<Manifest> load_manifest(const std::filesystem::path& dir) {
  const std::filesystem::path path = dir / kManifestFile;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) {
      return make_error(errc::io_failed, "not an ilre store: " + path.string() + " does not exist");
    }
    return tl::unexpected(errno_error(err, "open", path));
  }
  std::string text;
  char buf[65536];
  for (;;) {
    const ssize_t r = ::read(fd, buf, sizeof buf);
    if (r < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      return tl::unexpected(errno_error(err, "read", path));
    }
    if (r == 0) break;
    text.append(buf, static_cast<size_t>(r));
  }
  ::close(fd);
  return manifest_from_text(text, path.string());
}

StoreStats store_stats_of(const Manifest& m) {
  StoreStats st;
  st.n_segments = static_cast<int64_t>(m.segments.size());
  st.n_tokens = m.n_tokens;
  for (const SegmentInfo& s : m.segments) {
    st.raw_key_bytes += s.raw_key_bytes;
    st.stored_key_bytes += s.stored_key_bytes;
    st.stored_bytes += s.stored_bytes;
  }
  st.state_bytes = m.state ? m.state->size : 0;
  return st;
}

Result<void> check_store_files(const std::filesystem::path& dir, const Manifest& m) {
  auto check = [&](const std::string& rel, uint64_t size, const char* what) -> Result<void> {
    const std::filesystem::path p = dir / rel;
    struct stat st{};
    if (::stat(p.c_str(), &st) != 0) {
      const int err = errno;
      if (err == ENOENT) {
        return make_error(errc::io_failed, std::string(what) + " " + p.string() + " listed in the manifest is missing");
      }
      return tl::unexpected(errno_error(err, "stat", p));
    }
    if (static_cast<uint64_t>(st.st_size) != size) {
      return make_error(errc::checksum_mismatch, std::string(what) + " " + p.string() + " has " +
                                                     std::to_string(st.st_size) + " bytes, the manifest says " +
                                                     std::to_string(size) + " (truncated or replaced)");
    }
    return {};
  };
  for (const SegmentInfo& s : m.segments) {
    if (auto r = check(s.file, s.stored_bytes, "segment"); !r) return r;
  }
  if (m.state) {
    if (auto r = check(m.state->file, m.state->size, "state file"); !r) return r;
  }
  return {};
}

}  // namespace ilre::storage
