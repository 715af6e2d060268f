#include "storage/store_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "storage/checksum.h"
#include "storage/file_io.h"
#include "storage/guarded.h"
#include "storage/manifest.h"
#include "storage/segment_codec.h"

namespace ilre::storage {

namespace fs = std::filesystem;

namespace {

// Per-thread scratch, so a reader stays const and thread-safe while a loop over segments allocates nothing.
struct Scratch {
  std::vector<uint8_t> file;
  std::vector<uint8_t> planes;
  std::vector<int32_t> tokens;
};
Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

}  // namespace

struct StoreReader::Impl {
  fs::path dir;
  Manifest manifest;

  // Header of segment i from `bytes` (at least its prefix), checked against the manifest entry.
  Result<SegmentHeader> header_of(size_t i, std::span<const uint8_t> bytes, const std::string& name) const {
    const SegmentInfo& info = manifest.segments[i];
    auto h = decode_segment_header(bytes, name);
    if (!h) return h;
    if (h->first_pos != info.first_pos || h->n_tokens != info.n_tokens ||
        h->key_width != static_cast<uint32_t>(manifest.meta.key_width()) || h->dtype != manifest.meta.dtype ||
        h->shuffle != info.shuffle || h->token_frame_bytes != info.stored_token_bytes ||
        h->key_frame_bytes != info.stored_key_bytes) {
      return make_error(errc::checksum_mismatch, "segment " + name + ": header disagrees with the manifest");
    }
    return h;
  }

  Result<void> read_tokens(size_t i, std::vector<int32_t>& out) const {
    const SegmentInfo& info = manifest.segments[i];
    const fs::path path = dir / info.file;
    const std::string name = path.string();
    std::vector<uint8_t>& buf = scratch().file;
    const uint64_t prefix = kSegmentHeaderBytes + info.stored_token_bytes;
    if (auto r = read_file_prefix(path, info.stored_bytes, prefix, buf, "segment"); !r) return r;
    if (const uint32_t crc = crc32c(buf.data(), prefix); crc != info.prefix_checksum) {
      return make_error(errc::checksum_mismatch, "segment " + name + ": checksum mismatch in header/tokens (recorded " +
                                                     checksum_to_string(info.prefix_checksum) + ", file has " +
                                                     checksum_to_string(crc) + ")");
    }
    auto h = header_of(i, buf, name);
    if (!h) return tl::unexpected(h.error());
    if (!zstd_frame_may_hold({buf.data() + kSegmentHeaderBytes, info.stored_token_bytes},
                             static_cast<uint64_t>(info.n_tokens) * 4)) {  // before allocating for it
      return make_error(errc::checksum_mismatch, "segment " + name + ": token frame is corrupt or has the wrong size");
    }
    out.resize(static_cast<size_t>(info.n_tokens));
    return zstd_decompress({buf.data() + kSegmentHeaderBytes, info.stored_token_bytes},
                           {reinterpret_cast<uint8_t*>(out.data()), out.size() * sizeof(int32_t)}, name, "token");
  }

  Result<void> read_segment(size_t i, KeyFormat want, Segment& out, KeyLayout prefer = KeyLayout::token_major) const {
    if (i >= manifest.segments.size()) {
      return make_error(errc::out_of_range, "segment " + std::to_string(i) + " of a store with " +
                                                std::to_string(manifest.segments.size()));
    }
    const SegmentInfo& info = manifest.segments[i];
    const fs::path path = dir / info.file;
    const std::string name = path.string();
    Scratch& sc = scratch();
    if (auto r = read_file_prefix(path, info.stored_bytes, info.stored_bytes, sc.file, "segment"); !r) return r;
    if (const uint32_t crc = crc32c(sc.file); crc != info.checksum) {
      return make_error(errc::checksum_mismatch, "segment " + name + ": checksum mismatch (recorded " +
                                                     checksum_to_string(info.checksum) + ", file has " +
                                                     checksum_to_string(crc) + ")");
    }
    auto h = header_of(i, sc.file, name);
    if (!h) return tl::unexpected(h.error());
    const int32_t width = manifest.meta.key_width();
    const size_t n_values = static_cast<size_t>(info.n_tokens) * static_cast<size_t>(width);
    const uint8_t* tok_frame = sc.file.data() + kSegmentHeaderBytes;
    const uint8_t* key_frame = tok_frame + info.stored_token_bytes;
    // The sizes come from the file; check them against the frames before allocating for them.
    if (!zstd_frame_may_hold({tok_frame, info.stored_token_bytes}, static_cast<uint64_t>(info.n_tokens) * 4) ||
        !zstd_frame_may_hold({key_frame, info.stored_key_bytes}, static_cast<uint64_t>(n_values) * 2)) {
      return make_error(errc::checksum_mismatch, "segment " + name + ": a zstd frame is corrupt or has the wrong size");
    }

    out.first_pos = info.first_pos;
    out.n_tokens = info.n_tokens;
    out.key_width = width;
    out.format = want;
    out.layout = KeyLayout::token_major;
    out.tokens.resize(static_cast<size_t>(info.n_tokens));
    if (auto r = zstd_decompress({tok_frame, info.stored_token_bytes},
                                 {reinterpret_cast<uint8_t*>(out.tokens.data()), out.tokens.size() * 4}, name, "token");
        !r) {
      return r;
    }
    const KeyDtype dtype = manifest.meta.dtype;
    const bool same16 = want != KeyFormat::f32 && static_cast<uint8_t>(want) == static_cast<uint8_t>(dtype);
    if (same16 && info.shuffle == Shuffle::none) {  // straight into the output
      out.keys_f32.clear();
      out.keys_16.resize(n_values);
      return zstd_decompress({key_frame, info.stored_key_bytes},
                             {reinterpret_cast<uint8_t*>(out.keys_16.data()), n_values * 2}, name, "key");
    }
    sc.planes.resize(n_values * 2);
    if (auto r = zstd_decompress({key_frame, info.stored_key_bytes}, sc.planes, name, "key"); !r) return r;
    // A channel_bytes segment's planes are channel-major already: interleaving them is the whole decode.
    const bool channel_major = prefer == KeyLayout::channel_major && info.shuffle == Shuffle::channel_bytes &&
                               (want == KeyFormat::f32 || same16);
    if (channel_major) out.layout = KeyLayout::channel_major;
    if (want == KeyFormat::f32) {
      out.keys_16.clear();
      out.keys_f32.resize(n_values);
      if (channel_major) {  // all low bytes, then all high bytes: the `bytes` layout of [width, n_tokens]
        unshuffle_keys_f32(Shuffle::bytes, dtype, sc.planes.data(), static_cast<int64_t>(n_values), 1, out.keys_f32.data());
      } else {
        unshuffle_keys_f32(info.shuffle, dtype, sc.planes.data(), info.n_tokens, width, out.keys_f32.data());
      }
      return {};
    }
    if (channel_major) {
      out.keys_f32.clear();
      out.keys_16.resize(n_values);
      unshuffle_keys(Shuffle::bytes, sc.planes.data(), static_cast<int64_t>(n_values), 1, out.keys_16.data());
      return {};
    }
    out.keys_f32.clear();
    out.keys_16.resize(n_values);
    unshuffle_keys(info.shuffle, sc.planes.data(), info.n_tokens, width, out.keys_16.data());
    if (!same16) {  // f16 <-> bf16 through F32, block by block
      const KeyDtype to = want == KeyFormat::f16 ? KeyDtype::f16 : KeyDtype::bf16;
      float tmp[1024];
      for (size_t k = 0; k < n_values; k += 1024) {
        const size_t m = std::min<size_t>(1024, n_values - k);
        keys_from_16(dtype, out.keys_16.data() + k, tmp, m);
        keys_to_16(to, tmp, out.keys_16.data() + k, m);
      }
    }
    return {};
  }
};

StoreReader::StoreReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
StoreReader::StoreReader(StoreReader&&) noexcept = default;
StoreReader& StoreReader::operator=(StoreReader&&) noexcept = default;
StoreReader::~StoreReader() = default;

Result<StoreReader> StoreReader::open(const fs::path& dir) {
  return guarded([&]() -> Result<StoreReader> {
    auto m = load_manifest(dir);
    if (!m) return tl::unexpected(m.error());
    // A writer replacing the state blob between our manifest read and the stat deletes the file we were
    // about to check; a fresh manifest then names the new one. Listed segments are never deleted.
    for (int attempt = 0;; ++attempt) {
      auto r = check_store_files(dir, *m);
      if (r) break;
      auto again = load_manifest(dir);
      if (attempt >= 3 || !again || again->state_generation == m->state_generation) return tl::unexpected(r.error());
      m = std::move(again);
    }
    auto impl = std::make_unique<Impl>();
    impl->dir = dir;
    impl->manifest = std::move(*m);
    return StoreReader(std::move(impl));
  });
}

const StoreMeta& StoreReader::meta() const { return impl_->manifest.meta; }
int64_t StoreReader::n_tokens() const { return impl_->manifest.n_tokens; }
const std::vector<SegmentInfo>& StoreReader::segments() const { return impl_->manifest.segments; }
StoreStats StoreReader::stats() const { return store_stats_of(impl_->manifest); }
const fs::path& StoreReader::dir() const { return impl_->dir; }
const std::string& StoreReader::created_at() const { return impl_->manifest.created_at; }
const std::string& StoreReader::updated_at() const { return impl_->manifest.updated_at; }
bool StoreReader::has_state() const { return impl_->manifest.state.has_value(); }
const std::optional<StateInfo>& StoreReader::state_info() const { return impl_->manifest.state; }

Result<void> StoreReader::check_model(std::string_view fingerprint, int32_t retrieval_layer) const {
  const StoreMeta& m = impl_->manifest.meta;
  if (m.model_fingerprint == fingerprint && m.retrieval_layer == retrieval_layer) return {};
  return make_error(errc::model_mismatch, "store " + impl_->dir.string() + " was made by model '" + m.model_name +
                                              "' (fingerprint " + m.model_fingerprint + ") at l_R=" +
                                              std::to_string(m.retrieval_layer) + "; this run has fingerprint " +
                                              std::string(fingerprint) + " at l_R=" + std::to_string(retrieval_layer));
}

std::optional<size_t> StoreReader::segment_of(int64_t pos) const {
  const auto& segs = impl_->manifest.segments;
  const int64_t first = impl_->manifest.meta.first_pos;
  if (pos < first || pos >= first + impl_->manifest.n_tokens) return std::nullopt;
  auto it = std::upper_bound(segs.begin(), segs.end(), pos,
                             [](int64_t p, const SegmentInfo& s) { return p < s.first_pos; });
  return static_cast<size_t>(it - segs.begin()) - 1;
}

Result<Segment> StoreReader::read_segment(size_t i, KeyFormat want) const {
  return guarded([&]() -> Result<Segment> {
    Segment s;
    if (auto r = impl_->read_segment(i, want, s); !r) return tl::unexpected(r.error());
    return s;
  });
}

Result<void> StoreReader::read_segment_into(size_t i, KeyFormat want, Segment& out, KeyLayout prefer) const {
  return guarded([&]() -> Result<void> { return impl_->read_segment(i, want, out, prefer); });
}

Result<std::vector<int32_t>> StoreReader::segment_tokens(size_t i) const {
  return guarded([&]() -> Result<std::vector<int32_t>> {
    if (i >= impl_->manifest.segments.size()) {
      return make_error(errc::out_of_range, "segment " + std::to_string(i) + " of a store with " +
                                                std::to_string(impl_->manifest.segments.size()));
    }
    std::vector<int32_t> out;
    if (auto r = impl_->read_tokens(i, out); !r) return tl::unexpected(r.error());
    return out;
  });
}

Result<std::vector<int32_t>> StoreReader::tokens_at(std::span<const int64_t> positions) const {
  return guarded([&]() -> Result<std::vector<int32_t>> {
    const int64_t first = impl_->manifest.meta.first_pos;
    const int64_t end = first + impl_->manifest.n_tokens;
    for (size_t k = 0; k < positions.size(); ++k) {
      if (positions[k] < first || positions[k] >= end) {
        return make_error(errc::out_of_range, "tokens_at: position " + std::to_string(positions[k]) +
                                                  " outside the store [" + std::to_string(first) + ", " +
                                                  std::to_string(end) + ")");
      }
      if (k > 0 && positions[k] < positions[k - 1]) {
        return make_error(errc::invalid_argument, "tokens_at: positions must be sorted (non-decreasing)");
      }
    }
    std::vector<int32_t> out;
    out.reserve(positions.size());
    std::vector<int32_t>& seg_tokens = scratch().tokens;
    size_t k = 0;
    while (k < positions.size()) {
      const size_t i = *segment_of(positions[k]);
      if (auto r = impl_->read_tokens(i, seg_tokens); !r) return tl::unexpected(r.error());
      const SegmentInfo& info = impl_->manifest.segments[i];
      for (; k < positions.size() && positions[k] < info.end_pos(); ++k) {
        out.push_back(seg_tokens[static_cast<size_t>(positions[k] - info.first_pos)]);
      }
    }
    return out;
  });
}

Result<std::vector<uint8_t>> StoreReader::state() const {
  return guarded([&]() -> Result<std::vector<uint8_t>> {
    const auto& st = impl_->manifest.state;
    if (!st) return make_error(errc::invalid_argument, "store " + impl_->dir.string() + " has no state blob");
    const fs::path path = impl_->dir / st->file;
    std::vector<uint8_t> blob;
    if (auto r = read_file_prefix(path, st->size, st->size, blob, "state file"); !r) return tl::unexpected(r.error());
    if (const uint32_t crc = crc32c(blob); crc != st->checksum) {
      return make_error(errc::checksum_mismatch, "state file " + path.string() + ": checksum mismatch (recorded " +
                                                     checksum_to_string(st->checksum) + ", file has " +
                                                     checksum_to_string(crc) + ")");
    }
    return blob;
  });
}

Result<void> StoreReader::verify() const {
  return guarded([&]() -> Result<void> {
    Segment seg;
    const KeyFormat raw = impl_->manifest.meta.dtype == KeyDtype::f16 ? KeyFormat::f16 : KeyFormat::bf16;
    for (size_t i = 0; i < impl_->manifest.segments.size(); ++i) {
      if (auto r = impl_->read_segment(i, raw, seg); !r) return r;
    }
    if (has_state()) {
      if (auto r = state(); !r) return tl::unexpected(r.error());
    }
    return {};
  });
}

}  // namespace ilre::storage
