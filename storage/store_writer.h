// StoreWriter: appends one document's layer-l_R keys and token ids to a store directory, segment by
// segment, so that a crash at any moment leaves a store that reopens up to the last complete segment.
//
//   auto w = StoreWriter::create("run/doc-42.store", meta);           // or open_append(dir, fp, l_R)
//   for each chunk:  w->append(keys /*F32 [n, width]*/, tokens /*[n]*/, w->n_tokens());
//   w->write_state(blob);                                             // optional, replaced atomically
//
// One append = one segment file + one manifest rewrite (each: tmp, fsync, rename, fsync dir). The manifest
// grows with the segment list and is rewritten each time, so append a few thousand tokens at a time
// (2048-8192: ~1-4 MB of F16 keys at width 256), not one chunk of 64.
//
// A writer holds an exclusive flock on <dir>/writer.lock: a second writer on the same store fails with
// io_failed instead of corrupting it. Readers never take the lock. Not thread-safe: one thread drives a
// writer. No exception leaves these methods.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string_view>

#include <nlohmann/json.hpp>

#include "ilre/error.h"
#include "storage/store_types.h"

namespace ilre::storage {

class StoreWriter {
 public:
  // A new store in `dir`, which must not exist or be empty (else invalid_argument). Writes an empty
  // manifest at once, so a store with 0 segments is valid.
  static Result<StoreWriter> create(const std::filesystem::path& dir, StoreMeta meta, WriteOptions options = {});

  // Continue a store. Refuses (model_mismatch, naming both fingerprints / layers) one made by another model
  // or for another l_R. Removes leftovers of an interrupted writer: *.tmp files, segment files the manifest
  // does not list, state files other than the current one.
  static Result<StoreWriter> open_append(const std::filesystem::path& dir, std::string_view expected_fingerprint,
                                         int32_t expected_retrieval_layer, WriteOptions options = {});

  StoreWriter(StoreWriter&&) noexcept;
  StoreWriter& operator=(StoreWriter&&) noexcept;
  ~StoreWriter();

  // keys: F32 [n, key_width] row-major, tokens: [n], n >= 1; first_pos must equal n_tokens() (positions
  // continue exactly where the store ends). Converts keys to the store dtype, compresses, writes one
  // segment and the manifest. On error (disk_full, io_failed) nothing is added and the store on disk is
  // unchanged; after disk_full the writer can be used again once there is space.
  Result<SegmentStats> append(std::span<const float> keys, std::span<const int32_t> tokens, int64_t first_pos);
  // Same with keys already in 16 bits (`keys_dtype`; converted if it is not the store dtype).
  Result<SegmentStats> append(std::span<const uint16_t> keys, KeyDtype keys_dtype, std::span<const int32_t> tokens,
                              int64_t first_pos);

  // Adds every segment of the shard store `shard_dir` after the last one: a shard made by the same model,
  // layer, key shape and config (`same_config`; unset: equal snapshots), starting exactly where this store ends (model_mismatch / out_of_range
  // otherwise). Each segment file is checked against its recorded checksum and copied under its new name;
  // one manifest rewrite for the shard. On error nothing is added. The shard's state is not taken (the
  // caller decides which shard's state the merged store keeps). Returns the shard's totals.
  Result<StoreStats> append_store(const std::filesystem::path& shard_dir, const SameConfig& same_config = {});

  // Opaque caller state (e.g. the streaming KV cache at the end of the document): written to a new
  // state-<generation>.bin, then the manifest switches to it, then the old file is removed.
  Result<void> write_state(std::span<const uint8_t> blob);

  // Replaces the free-form "notes" object (must be a JSON object).
  Result<void> set_notes(nlohmann::json notes);

  // All-or-nothing: after begin_transaction() segments and states are written as usual but the manifest on
  // disk is not switched to them, so readers (and a restart after kill -9) keep seeing the store as it was.
  // commit() switches the manifest once (durable when it returns); rollback(), or destroying the writer
  // without commit, removes what the transaction wrote. A daemon's upload that breaks leaves no trace.
  void begin_transaction();
  Result<void> commit();
  void rollback();

  const StoreMeta& meta() const;
  int64_t n_tokens() const;  // tokens held
  int64_t end_pos() const;   // meta().first_pos + n_tokens(): the position the next append must start at
  StoreStats stats() const;
  const std::filesystem::path& dir() const;

 private:
  struct Impl;
  explicit StoreWriter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ilre::storage
