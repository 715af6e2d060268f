// One segment file in memory: header encoding, byte shuffles, zstd frames, dtype conversion.
// Pure functions over buffers; the file handling lives in store_writer.cpp / store_reader.cpp.
//
// Segment file (all integers little-endian), see FORMAT.md:
//   [0, 64)              header (SegmentHeader), ending in a CRC32C of its first 60 bytes
//   [64, 64+T)           zstd frame: int32 token ids [n_tokens]
//   [64+T, 64+T+K)       zstd frame: 16-bit keys [n_tokens, key_width] in the header's shuffle layout
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "ilre/error.h"
#include "storage/store_types.h"

namespace ilre::storage {

inline constexpr size_t kSegmentHeaderBytes = 64;
inline constexpr uint32_t kSegmentFormatVersion = 1;
inline constexpr char kSegmentMagic[8] = {'I', 'L', 'R', 'E', 'K', 'S', 'E', 'G'};
// Header flag bits.
inline constexpr uint16_t kFlagZstdChecksums = 1u << 0;  // both frames carry zstd content checksums

struct SegmentHeader {
  uint32_t version = kSegmentFormatVersion;
  int64_t first_pos = 0;
  int64_t n_tokens = 0;
  uint32_t key_width = 0;
  KeyDtype dtype = KeyDtype::f16;
  Shuffle shuffle = Shuffle::none;
  uint16_t flags = kFlagZstdChecksums;
  uint64_t token_frame_bytes = 0;
  uint64_t key_frame_bytes = 0;

  uint64_t file_bytes() const { return kSegmentHeaderBytes + token_frame_bytes + key_frame_bytes; }
  uint64_t prefix_bytes() const { return kSegmentHeaderBytes + token_frame_bytes; }
};

void encode_segment_header(const SegmentHeader& h, uint8_t out[kSegmentHeaderBytes]);
// Checks magic, header CRC, version (newer -> unsupported) and field ranges. `file` names the segment in
// error messages.
Result<SegmentHeader> decode_segment_header(std::span<const uint8_t> bytes, const std::string& file);

// F32 <-> 16-bit bit patterns (round to nearest even; the model library's conversions).
void keys_to_16(KeyDtype dtype, const float* src, uint16_t* dst, size_t n);
void keys_from_16(KeyDtype dtype, const uint16_t* src, float* dst, size_t n);

// values [n_tokens, width] -> dst (2*n_tokens*width bytes) in layout `s`, and back.
void shuffle_keys(Shuffle s, const uint16_t* values, int64_t n_tokens, int32_t width, uint8_t* dst);
void unshuffle_keys(Shuffle s, const uint8_t* src, int64_t n_tokens, int32_t width, uint16_t* values);
// unshuffle + convert to F32 in one pass over cache-sized blocks.
void unshuffle_keys_f32(Shuffle s, KeyDtype dtype, const uint8_t* src, int64_t n_tokens, int32_t width,
                        float* out);

// A zstd compression context with frame content checksums on; reuse it across segments.
class ZstdCompressor {
 public:
  explicit ZstdCompressor(int level);
  ~ZstdCompressor();
  ZstdCompressor(const ZstdCompressor&) = delete;
  ZstdCompressor& operator=(const ZstdCompressor&) = delete;
  // Replaces `out` with one zstd frame of `src`.
  Result<void> compress(std::span<const uint8_t> src, std::vector<uint8_t>& out);
  int level() const { return level_; }

 private:
  void* ctx_;  // ZSTD_CCtx*
  int level_;
};

// Whether `frame` can be one zstd frame with exactly n bytes of content: its header declares n, and n is no
// more than a frame of that size can expand to (each block takes >= 4 bytes and yields <= 128 KiB). Lets a
// reader refuse a corrupt size recorded in the manifest and header before allocating n bytes for it.
bool zstd_frame_may_hold(std::span<const uint8_t> frame, uint64_t n);

// Decompresses one frame that must expand to exactly dst.size() bytes; any zstd error (including its
// content checksum) -> checksum_mismatch naming `file` and `what`.
Result<void> zstd_decompress(std::span<const uint8_t> frame, std::span<uint8_t> dst, const std::string& file,
                             std::string_view what);

// A whole encoded segment, ready to write: header + token frame + key frame.
struct EncodedSegment {
  SegmentHeader header;
  uint8_t header_bytes[kSegmentHeaderBytes] = {};
  std::vector<uint8_t> token_frame;
  std::vector<uint8_t> key_frame;
  // The losing candidate's buffer, kept for the next call: a segment's frames are ~1 MB, and allocating
  // them anew for every segment fragments the allocator's per-thread arenas (RSS crept with the document).
  std::vector<uint8_t> spare_frame;
  uint64_t candidate_key_bytes[3] = {0, 0, 0};
  uint32_t checksum = 0;         // CRC32C of the whole file
  uint32_t prefix_checksum = 0;  // CRC32C of header + token frame
};

// keys: [n_tokens, width] already in `dtype`. Compresses every layout `mode` allows, keeps the smallest
// (ties prefer the simpler layout). `scratch` is reused between calls.
Result<void> encode_segment(ZstdCompressor& zc, ShuffleMode mode, KeyDtype dtype, int64_t first_pos,
                            std::span<const uint16_t> keys, std::span<const int32_t> tokens, int32_t width,
                            EncodedSegment& out, std::vector<uint8_t>& scratch);

}  // namespace ilre::storage
