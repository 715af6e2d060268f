// StoreReader: reads a key store written by StoreWriter, one segment at a time.
//
//   auto r = StoreReader::open(dir);                 // manifest + one stat per file; no segment is read
//   for (size_t i = 0; i < r->segments().size(); ++i) {
//     r->read_segment_into(i, KeyFormat::f32, seg);  // F32 [seg.n_tokens, key_width], checksum verified
//     score(seg.keys_f32, seg.first_pos);
//   }
//   auto ids = r->tokens_at(selected_positions);     // reads only the token part of the segments needed
//
// Memory is bounded by one segment (plus per-thread scratch of the same size), whatever the store size.
// The reader works on the manifest it saw at open(): segments appended later are not visible, and since
// segment files are never modified once listed, a writer appending concurrently does not disturb it (a
// state blob replaced after open() makes state() fail with io_failed). All const methods may be called
// from several threads at once; several readers (in one or several processes) may read one store.
// No exception leaves these methods.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ilre/error.h"
#include "storage/store_types.h"

namespace ilre::storage {

class StoreReader {
 public:
  // Validates the manifest (checksum, version, continuity) and that every segment / state file it lists
  // exists with its recorded size. Errors: io_failed (no store, missing file, naming it), checksum_mismatch
  // (manifest modified or a file of the wrong size), unsupported (newer format), bad_json.
  static Result<StoreReader> open(const std::filesystem::path& dir);

  StoreReader(StoreReader&&) noexcept;
  StoreReader& operator=(StoreReader&&) noexcept;
  ~StoreReader();

  const StoreMeta& meta() const;
  int64_t n_tokens() const;
  const std::vector<SegmentInfo>& segments() const;
  StoreStats stats() const;
  const std::filesystem::path& dir() const;
  const std::string& created_at() const;  // ISO 8601 UTC
  const std::string& updated_at() const;

  // model_mismatch (naming both fingerprints and layers) unless the store was made by this model and l_R.
  Result<void> check_model(std::string_view fingerprint, int32_t retrieval_layer) const;

  // Positions below run over [meta().first_pos, meta().first_pos + n_tokens()): [0, n_tokens()) for a whole
  // document, a later range for a shard of a sharded ingest.

  // Index of the segment holding `pos`, nullopt outside the store's positions.
  std::optional<size_t> segment_of(int64_t pos) const;

  // Reads, verifies (file CRC32C, header, zstd frame checksums) and decodes segment i. `want` f32 fills
  // keys_f32; f16/bf16 fill keys_16 (converted through F32 when it is not the store dtype).
  Result<Segment> read_segment(size_t i, KeyFormat want) const;
  // Same, reusing out's buffers (the loop form: no allocation once warmed up). With `prefer` channel_major,
  // the keys of a segment stored channel-major come out channel-major (no transpose: the fastest read), in
  // F32 or in the store's own 16-bit dtype; out.layout says which layout came out.
  Result<void> read_segment_into(size_t i, KeyFormat want, Segment& out,
                                 KeyLayout prefer = KeyLayout::token_major) const;

  // Token ids of segment i (reads and verifies only the header and token frame).
  Result<std::vector<int32_t>> segment_tokens(size_t i) const;

  // Token ids at the given positions, which must be non-decreasing and inside the store; reads only
  // the token part of the segments that hold them. This is how the compressed prompt is built.
  Result<std::vector<int32_t>> tokens_at(std::span<const int64_t> sorted_positions) const;

  // The state blob (empty optional-like: has_state() false -> invalid_argument).
  bool has_state() const;
  const std::optional<StateInfo>& state_info() const;
  Result<std::vector<uint8_t>> state() const;

  // Reads and verifies every segment and the state, one at a time (an fsck; O(store) time, O(segment) memory).
  Result<void> verify() const;

 private:
  struct Impl;
  explicit StoreReader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ilre::storage
