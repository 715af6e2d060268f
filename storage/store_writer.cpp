#include "storage/store_writer.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>
#include <zstd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <system_error>
#include <unordered_set>

#include "storage/checksum.h"
#include "storage/file_io.h"
#include "storage/guarded.h"
#include "storage/manifest.h"
#include "storage/segment_codec.h"

namespace ilre::storage {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

Result<void> validate_options(const WriteOptions& o) {
  if (o.zstd_level < ZSTD_minCLevel() || o.zstd_level > ZSTD_maxCLevel() || o.zstd_level == 0) {
    return make_error(errc::invalid_argument, "zstd level " + std::to_string(o.zstd_level) + " outside [" +
                                                  std::to_string(ZSTD_minCLevel()) + ", " +
                                                  std::to_string(ZSTD_maxCLevel()) + "] (0 is not allowed)");
  }
  return {};
}

Result<void> validate_meta(const StoreMeta& m) {
  if (m.model_fingerprint.empty()) return make_error(errc::invalid_argument, "store: empty model fingerprint");
  if (m.retrieval_layer < 0) return make_error(errc::invalid_argument, "store: retrieval layer must be >= 0");
  if (m.n_kv_heads <= 0 || m.head_dim <= 0 || static_cast<int64_t>(m.n_kv_heads) * m.head_dim > (1 << 20)) {
    return make_error(errc::invalid_argument, "store: bad key shape n_kv_heads=" + std::to_string(m.n_kv_heads) +
                                                  " head_dim=" + std::to_string(m.head_dim));
  }
  if (m.dtype != KeyDtype::f16 && m.dtype != KeyDtype::bf16) {
    return make_error(errc::invalid_argument, "store: key dtype must be f16 or bf16");
  }
  if (!m.config.is_object() || !m.notes.is_object()) {
    return make_error(errc::invalid_argument, "store: config and notes must be JSON objects");
  }
  try {  // nlohmann refuses to write strings that are not UTF-8; say so now rather than at the first write
    (void)nlohmann::json{m.model_fingerprint, m.model_name, m.config, m.notes}.dump();
  } catch (const nlohmann::json::exception&) {
    return make_error(errc::invalid_argument, "store: model name, fingerprint, config and notes must be valid UTF-8");
  }
  return {};
}

// Exclusive, non-blocking flock on <dir>/writer.lock; released by the kernel when the process dies.
Result<int> lock_store(const fs::path& dir) {
  const fs::path p = dir / kLockFile;
  const int fd = ::open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return tl::unexpected(errno_error(errno, "open", p));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) {
      return make_error(errc::io_failed, "store " + dir.string() + " is already open for writing (" + p.string() +
                                             " is locked by another writer)");
    }
    return tl::unexpected(errno_error(err, "flock", p));
  }
  return fd;
}

}  // namespace

struct StoreWriter::Impl {
  fs::path dir;
  WriteOptions options;
  std::shared_ptr<FileIo> io;
  Manifest manifest;
  int lock_fd = -1;
  ZstdCompressor zc;
  EncodedSegment enc;
  std::vector<uint8_t> scratch;
  std::vector<uint16_t> keys16;
  std::vector<float> keys32;
  std::string broken;  // non-empty: a failure left the on-disk state unknown; the writer refuses more work
  std::optional<Manifest> committed;  // set during a transaction: the manifest on disk

  Impl(fs::path d, WriteOptions o, Manifest m, int fd)
      : dir(std::move(d)), options(std::move(o)), io(options.io ? options.io : posix_file_io()),
        manifest(std::move(m)), lock_fd(fd), zc(options.zstd_level) {}
  ~Impl() {
    if (committed) rollback();
    if (lock_fd >= 0) ::close(lock_fd);
  }

  void rollback() {
    if (!committed) return;
    manifest = std::move(*committed);
    committed.reset();
    clean_leftovers();
  }

  Result<void> check_usable() const {
    if (!broken.empty()) {
      return make_error(errc::io_failed, "store writer for " + dir.string() + " stopped after an earlier error (" +
                                             broken + "); reopen the store with open_append");
    }
    return {};
  }

  // Rewrites the manifest from `manifest`. If the rename happened but a later step failed, the new
  // manifest is visible but perhaps not durable: the writer stops (broken) rather than guess.
  Result<void> write_manifest() {
    if (committed) return {};  // a transaction switches the manifest once, at commit
    manifest.updated_at = now_iso8601();
    const std::string text = manifest_to_text(manifest);
    const std::span<const uint8_t> part{reinterpret_cast<const uint8_t*>(text.data()), text.size()};
    AtomicWriteOutcome outcome;
    auto r = write_file_atomic(*io, dir / kManifestFile, std::span(&part, 1), options.fsync, &outcome);
    if (!r && outcome.renamed) broken = r.error().message;
    return r;
  }

  Result<SegmentStats> append16(std::span<const uint16_t> keys, std::span<const int32_t> tokens, int64_t first_pos,
                                int64_t n_nonfinite, Clock::time_point t_start) {
    const int32_t width = manifest.meta.key_width();
    const size_t index = manifest.segments.size();
    SegmentStats stats;
    stats.n_nonfinite = n_nonfinite;
    if (auto r = encode_segment(zc, options.shuffle, manifest.meta.dtype, first_pos, keys, tokens, width, enc,
                                scratch);
        !r) {
      return tl::unexpected(r.error());
    }
    std::copy(std::begin(enc.candidate_key_bytes), std::end(enc.candidate_key_bytes), stats.candidate_key_bytes);
    SegmentInfo& info = stats.segment;
    info.file = segment_file_name(index);
    info.first_pos = first_pos;
    info.n_tokens = static_cast<int64_t>(tokens.size());
    info.raw_key_bytes = keys.size_bytes();
    info.stored_key_bytes = enc.key_frame.size();
    info.stored_token_bytes = enc.token_frame.size();
    info.stored_bytes = enc.header.file_bytes();
    info.shuffle = enc.header.shuffle;
    info.zstd_level = zc.level();
    info.checksum = enc.checksum;
    info.prefix_checksum = enc.prefix_checksum;
    stats.encode_seconds = seconds_since(t_start);

    const auto t_write = Clock::now();
    const std::span<const uint8_t> parts[3] = {
        {enc.header_bytes, kSegmentHeaderBytes}, {enc.token_frame}, {enc.key_frame}};
    const fs::path seg_path = dir / info.file;
    if (auto r = write_file_atomic(*io, seg_path, parts, options.fsync); !r) {
      // The segment is not in the manifest: whatever is on disk under its name is ignored and overwritten.
      std::error_code ec;
      if (fs::exists(seg_path, ec)) io->unlink(seg_path.string());
      return tl::unexpected(r.error());
    }
    manifest.segments.push_back(info);
    manifest.n_tokens += info.n_tokens;
    if (auto r = write_manifest(); !r) {
      if (broken.empty()) {  // old manifest still in place: undo and free the segment's space
        manifest.segments.pop_back();
        manifest.n_tokens -= info.n_tokens;
        io->unlink(seg_path.string());
      }
      return tl::unexpected(r.error());
    }
    stats.write_seconds = seconds_since(t_write);
    return stats;
  }

  Result<void> check_append(size_t n_keys, size_t n_tokens, int64_t first_pos) const {
    if (auto r = check_usable(); !r) return r;
    const size_t width = static_cast<size_t>(manifest.meta.key_width());
    if (n_tokens == 0) return make_error(errc::invalid_argument, "store append: no tokens");
    if (n_keys != n_tokens * width) {
      return make_error(errc::invalid_argument, "store append: " + std::to_string(n_keys) + " key values for " +
                                                    std::to_string(n_tokens) + " tokens of width " +
                                                    std::to_string(width));
    }
    if (first_pos != end_pos()) {
      return make_error(errc::out_of_range, "store append: first position " + std::to_string(first_pos) +
                                                " does not continue the store, which ends at " +
                                                std::to_string(end_pos()));
    }
    return {};
  }

  int64_t end_pos() const { return manifest.meta.first_pos + manifest.n_tokens; }

  // A shard's keys are only exact for this document if everything that shapes them matches.
  Result<void> check_shard(const fs::path& shard, const Manifest& m, const SameConfig& same_config) const {
    const StoreMeta& a = manifest.meta;
    const StoreMeta& b = m.meta;
    auto refuse = [&](const std::string& what) {
      return make_error(errc::model_mismatch, "shard " + shard.string() + " " + what + " than the store " +
                                                  dir.string() + " it is merged into");
    };
    if (b.model_fingerprint != a.model_fingerprint) return refuse("was made by another model (" + b.model_name + ")");
    if (b.retrieval_layer != a.retrieval_layer) return refuse("holds keys of another layer");
    if (b.n_kv_heads != a.n_kv_heads || b.head_dim != a.head_dim || b.dtype != a.dtype) {
      return refuse("has another key shape or dtype");
    }
    if (same_config ? !same_config(a.config, b.config) : b.config != a.config) {
      return refuse("was ingested with other settings (config)");
    }
    if (b.first_pos != end_pos()) {
      return make_error(errc::out_of_range, "shard " + shard.string() + " starts at position " +
                                                std::to_string(b.first_pos) + ", but the merged store ends at " +
                                                std::to_string(end_pos()) + " (shards must be given in order, "
                                                "none missing)");
    }
    return {};
  }

  // Copies one listed segment of a shard under this store's next segment name, after checking the whole
  // file against the shard manifest's checksum (a shard may have travelled from another machine).
  Result<void> adopt_segment(const fs::path& shard, const SegmentInfo& src, std::vector<uint8_t>& bytes) {
    const fs::path from = shard / src.file;
    if (auto r = read_file_prefix(from, src.stored_bytes, src.stored_bytes, bytes, "segment"); !r) return r;
    if (const uint32_t crc = crc32c(bytes); crc != src.checksum) {
      return make_error(errc::checksum_mismatch, "segment " + from.string() + ": checksum mismatch (recorded " +
                                                     checksum_to_string(src.checksum) + ", file has " +
                                                     checksum_to_string(crc) + ")");
    }
    SegmentInfo info = src;
    info.file = segment_file_name(manifest.segments.size());
    const std::span<const uint8_t> part{bytes};
    const fs::path to = dir / info.file;
    if (auto r = write_file_atomic(*io, to, std::span(&part, 1), options.fsync); !r) {
      std::error_code ec;
      if (fs::exists(to, ec)) io->unlink(to.string());
      return r;
    }
    manifest.segments.push_back(std::move(info));
    manifest.n_tokens += src.n_tokens;
    return {};
  }

  // Removes what an interrupted writer may have left: tmp files, unlisted segments, stale state files.
  void clean_leftovers() {
    std::unordered_set<std::string> listed;
    for (const SegmentInfo& s : manifest.segments) listed.insert(fs::path(s.file).filename().string());
    auto sweep = [&](const fs::path& d, bool segments_dir) {
      std::error_code ec;
      for (fs::directory_iterator it(d, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        bool stale = name.size() > kTmpSuffix.size() && name.ends_with(kTmpSuffix);
        if (segments_dir) stale = stale || (is_segment_file_name(name) && !listed.count(name));
        else stale = stale || (is_state_file_name(name) && (!manifest.state || manifest.state->file != name));
        if (stale) io->unlink(it->path().string());
      }
    };
    sweep(dir, false);
    sweep(dir / kSegmentsDir, true);
  }
};

StoreWriter::StoreWriter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
StoreWriter::StoreWriter(StoreWriter&&) noexcept = default;
StoreWriter& StoreWriter::operator=(StoreWriter&&) noexcept = default;
StoreWriter::~StoreWriter() = default;

Result<StoreWriter> StoreWriter::create(const fs::path& dir, StoreMeta meta, WriteOptions options) {
  return guarded([&]() -> Result<StoreWriter> {
    if (auto r = validate_meta(meta); !r) return tl::unexpected(r.error());
    if (auto r = validate_options(options); !r) return tl::unexpected(r.error());
    std::error_code ec;
    const bool existed = fs::exists(dir, ec);
    if (existed) {
      if (!fs::is_directory(dir, ec)) {
        return make_error(errc::invalid_argument, "store " + dir.string() + " exists and is not a directory");
      }
      if (!fs::is_empty(dir, ec)) {
        return make_error(errc::invalid_argument, "store " + dir.string() +
                                                      " already exists and is not empty (open_append continues a store)");
      }
    }
    if (fs::create_directories(dir / kSegmentsDir, ec); ec) {
      return tl::unexpected(errno_error(ec.value(), "create directory", dir / kSegmentsDir));
    }
    auto io = options.io ? options.io : posix_file_io();
    if (options.fsync) {
      const fs::path parent = fs::absolute(dir).parent_path();
      if (int err = io->fsync_dir(parent.string())) return tl::unexpected(errno_error(err, "fsync directory", parent));
    }
    auto lock = lock_store(dir);
    if (!lock) return tl::unexpected(lock.error());
    Manifest m;
    m.meta = std::move(meta);
    m.created_at = now_iso8601();
    m.zstd_level = options.zstd_level;
    m.shuffle_mode = options.shuffle;
    auto impl = std::make_unique<Impl>(dir, std::move(options), std::move(m), *lock);
    if (auto r = impl->write_manifest(); !r) {
      // Leave the directory as we found it, so the caller can simply retry.
      impl.reset();
      fs::remove_all(dir / kSegmentsDir, ec);
      fs::remove(dir / kLockFile, ec);
      if (!existed) fs::remove(dir, ec);
      return tl::unexpected(r.error());
    }
    return StoreWriter(std::move(impl));
  });
}

Result<StoreWriter> StoreWriter::open_append(const fs::path& dir, std::string_view expected_fingerprint,
                                             int32_t expected_retrieval_layer, WriteOptions options) {
  return guarded([&]() -> Result<StoreWriter> {
    if (auto r = validate_options(options); !r) return tl::unexpected(r.error());
    if (auto probe = load_manifest(dir); !probe) return tl::unexpected(probe.error());  // "not a store" first
    auto lock = lock_store(dir);
    if (!lock) return tl::unexpected(lock.error());
    auto unlock = [&] { ::close(*lock); };
    auto m = load_manifest(dir);  // again, now that no other writer can change it
    if (!m) {
      unlock();
      return tl::unexpected(m.error());
    }
    if (m->meta.model_fingerprint != expected_fingerprint || m->meta.retrieval_layer != expected_retrieval_layer) {
      unlock();
      return make_error(errc::model_mismatch,
                        "store " + dir.string() + " was made by model '" + m->meta.model_name + "' (fingerprint " +
                            m->meta.model_fingerprint + ") at l_R=" + std::to_string(m->meta.retrieval_layer) +
                            "; this run has fingerprint " + std::string(expected_fingerprint) + " at l_R=" +
                            std::to_string(expected_retrieval_layer));
    }
    if (auto r = check_store_files(dir, *m); !r) {
      unlock();
      return tl::unexpected(r.error());
    }
    m->zstd_level = options.zstd_level;
    m->shuffle_mode = options.shuffle;
    auto impl = std::make_unique<Impl>(dir, std::move(options), std::move(*m), *lock);
    impl->clean_leftovers();
    return StoreWriter(std::move(impl));
  });
}

Result<SegmentStats> StoreWriter::append(std::span<const float> keys, std::span<const int32_t> tokens,
                                         int64_t first_pos) {
  return guarded([&]() -> Result<SegmentStats> {
    Impl& s = *impl_;
    if (auto r = s.check_append(keys.size(), tokens.size(), first_pos); !r) return tl::unexpected(r.error());
    const auto t0 = Clock::now();
    s.keys16.resize(keys.size());
    keys_to_16(s.manifest.meta.dtype, keys.data(), s.keys16.data(), keys.size());
    // Count values the conversion could not represent (f16 overflows above 65504): reported, not refused.
    int64_t nonfinite = 0;
    const uint16_t exp_mask = s.manifest.meta.dtype == KeyDtype::f16 ? 0x7C00 : 0x7F80;
    for (uint16_t h : s.keys16) nonfinite += (h & exp_mask) == exp_mask;
    return s.append16(s.keys16, tokens, first_pos, nonfinite, t0);
  });
}

Result<SegmentStats> StoreWriter::append(std::span<const uint16_t> keys, KeyDtype keys_dtype,
                                         std::span<const int32_t> tokens, int64_t first_pos) {
  return guarded([&]() -> Result<SegmentStats> {
    Impl& s = *impl_;
    if (auto r = s.check_append(keys.size(), tokens.size(), first_pos); !r) return tl::unexpected(r.error());
    const auto t0 = Clock::now();
    if (keys_dtype == s.manifest.meta.dtype) return s.append16(keys, tokens, first_pos, 0, t0);
    s.keys32.resize(keys.size());
    keys_from_16(keys_dtype, keys.data(), s.keys32.data(), keys.size());
    s.keys16.resize(keys.size());
    keys_to_16(s.manifest.meta.dtype, s.keys32.data(), s.keys16.data(), keys.size());
    return s.append16(s.keys16, tokens, first_pos, 0, t0);
  });
}

Result<void> StoreWriter::write_state(std::span<const uint8_t> blob) {
  return guarded([&]() -> Result<void> {
    Impl& s = *impl_;
    if (auto r = s.check_usable(); !r) return r;
    StateInfo next;
    next.generation = s.manifest.state_generation + 1;
    next.file = state_file_name(next.generation);
    next.size = blob.size();
    next.checksum = crc32c(blob);
    const fs::path path = s.dir / next.file;
    if (auto r = write_file_atomic(*s.io, path, std::span(&blob, 1), s.options.fsync); !r) {
      std::error_code ec;
      if (fs::exists(path, ec)) s.io->unlink(path.string());
      return r;
    }
    const std::optional<StateInfo> old = s.manifest.state;
    const int64_t old_generation = s.manifest.state_generation;
    s.manifest.state = next;
    s.manifest.state_generation = next.generation;
    if (auto r = s.write_manifest(); !r) {
      if (s.broken.empty()) {
        s.manifest.state = old;
        s.manifest.state_generation = old_generation;
        s.io->unlink(path.string());
      }
      return r;
    }
    // Only now that the manifest points at the new file may the old one go (a reader that opened the
    // store before this call and has not read the state yet will get io_failed naming the old file). In a
    // transaction the state the disk manifest names stays until commit.
    const bool on_disk = s.committed && s.committed->state && old && s.committed->state->file == old->file;
    if (old && !on_disk) s.io->unlink((s.dir / old->file).string());
    return {};
  });
}

Result<void> StoreWriter::set_notes(nlohmann::json notes) {
  return guarded([&]() -> Result<void> {
    Impl& s = *impl_;
    if (auto r = s.check_usable(); !r) return r;
    if (!notes.is_object()) return make_error(errc::invalid_argument, "store notes must be a JSON object");
    try {
      (void)notes.dump();
    } catch (const nlohmann::json::exception&) {
      return make_error(errc::invalid_argument, "store notes must be valid UTF-8");
    }
    nlohmann::json old = std::move(s.manifest.meta.notes);
    s.manifest.meta.notes = std::move(notes);
    if (auto r = s.write_manifest(); !r) {
      if (s.broken.empty()) s.manifest.meta.notes = std::move(old);
      return r;
    }
    return {};
  });
}

Result<StoreStats> StoreWriter::append_store(const fs::path& shard_dir, const SameConfig& same_config) {
  return guarded([&]() -> Result<StoreStats> {
    Impl& s = *impl_;
    if (auto r = s.check_usable(); !r) return tl::unexpected(r.error());
    auto m = load_manifest(shard_dir);
    if (!m) return tl::unexpected(m.error());
    if (auto r = check_store_files(shard_dir, *m); !r) return tl::unexpected(r.error());
    if (auto r = s.check_shard(shard_dir, *m, same_config); !r) return tl::unexpected(r.error());
    const size_t segments_before = s.manifest.segments.size();
    const int64_t tokens_before = s.manifest.n_tokens;
    auto undo = [&] {
      for (size_t i = segments_before; i < s.manifest.segments.size(); ++i) {
        s.io->unlink((s.dir / s.manifest.segments[i].file).string());
      }
      s.manifest.segments.resize(segments_before);
      s.manifest.n_tokens = tokens_before;
    };
    std::vector<uint8_t> bytes;
    for (const SegmentInfo& seg : m->segments) {
      if (auto r = s.adopt_segment(shard_dir, seg, bytes); !r) {
        undo();
        return tl::unexpected(r.error());
      }
    }
    if (s.options.fsync) {
      if (int err = s.io->fsync_dir((s.dir / kSegmentsDir).string())) {
        undo();
        return tl::unexpected(errno_error(err, "fsync directory", s.dir / kSegmentsDir));
      }
    }
    if (auto r = s.write_manifest(); !r) {
      if (s.broken.empty()) undo();
      return tl::unexpected(r.error());
    }
    return store_stats_of(*m);
  });
}

void StoreWriter::begin_transaction() {
  if (!impl_->committed) impl_->committed = impl_->manifest;
}

Result<void> StoreWriter::commit() {
  return guarded([&]() -> Result<void> {
    Impl& s = *impl_;
    if (!s.committed) return {};
    if (auto r = s.check_usable(); !r) return r;
    const std::optional<StateInfo> before = s.committed->state;
    Manifest on_disk = std::move(*s.committed);
    s.committed.reset();
    if (auto r = s.write_manifest(); !r) {
      if (s.broken.empty()) {  // the old manifest is still the one on disk: stay in the transaction
        s.committed = std::move(on_disk);
      }
      return r;
    }
    if (before && (!s.manifest.state || s.manifest.state->file != before->file)) s.io->unlink((s.dir / before->file).string());
    return {};
  });
}

void StoreWriter::rollback() { impl_->rollback(); }

const StoreMeta& StoreWriter::meta() const { return impl_->manifest.meta; }
int64_t StoreWriter::n_tokens() const { return impl_->manifest.n_tokens; }
int64_t StoreWriter::end_pos() const { return impl_->end_pos(); }
const fs::path& StoreWriter::dir() const { return impl_->dir; }

StoreStats StoreWriter::stats() const { return store_stats_of(impl_->manifest); }

}  // namespace ilre::storage
