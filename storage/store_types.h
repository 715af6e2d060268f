// Types shared by StoreWriter and StoreReader: what a key store holds and how it is described.
// A store is one directory with one document's layer-l_R keys and token ids; see storage/FORMAT.md.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "ilre/error.h"

namespace ilre::storage {

class FileIo;

// Element type of the keys on disk.
enum class KeyDtype : uint8_t { f16 = 1, bf16 = 2 };

// Element type a reader wants the keys in: F32, or 16-bit (when it differs from the store dtype the
// values are converted through F32, which for f16 <-> bf16 may round).
enum class KeyFormat : uint8_t { f32 = 0, f16 = 1, bf16 = 2 };

// Order of decoded keys: token-major [n_tokens, key_width] (what every consumer takes), or channel-major
// [key_width, n_tokens], which a channel_bytes segment decodes to without a transpose.
enum class KeyLayout : uint8_t { token_major = 0, channel_major = 1 };

// Byte layout of the 16-bit keys before zstd, chosen per segment.
enum class Shuffle : uint8_t {
  none = 0,           // values as they are: lo,hi,lo,hi,...
  bytes = 1,          // all low bytes of the segment, then all high bytes
  channel_bytes = 2,  // per byte plane, channel-major: lo[c0 t0..tn] lo[c1 t0..tn] ... hi[c0 ...] ...
};

// What the writer tries. `automatic` compresses every layout and keeps the smallest.
enum class ShuffleMode : uint8_t { automatic = 0, none = 1, bytes = 2, channel_bytes = 3 };

std::string_view key_dtype_name(KeyDtype dtype);            // "f16" | "bf16"
std::optional<KeyDtype> key_dtype_from_name(std::string_view name);
std::string_view shuffle_name(Shuffle shuffle);            // "none" | "bytes" | "channel_bytes"
std::optional<Shuffle> shuffle_from_name(std::string_view name);
std::string_view shuffle_mode_name(ShuffleMode mode);      // "auto" | "none" | "bytes" | "channel_bytes"

// Who made the store and what shape its keys have. Given by the caller at create(); persisted.
struct StoreMeta {
  std::string model_fingerprint;  // identifies the weights + tokenizer (caller's choice of hash); required
  std::string model_name;         // human readable, e.g. "gemma-3-270m-q4_k_m"
  int32_t retrieval_layer = -1;   // l_R: the keys are the ones of this layer (0-based)
  int32_t n_kv_heads = 0;
  int32_t head_dim = 0;
  KeyDtype dtype = KeyDtype::f16;
  nlohmann::json config = nlohmann::json::object();  // caller's resolved config snapshot (opaque object)
  nlohmann::json notes = nlohmann::json::object();   // free-form; replaced by StoreWriter::set_notes
  // Position of the store's first token: 0 for a whole document; a shard of a sharded ingest holds tokens
  // [first_pos, first_pos + n_tokens) of its document and is only good for merging (storage/store_merge.h).
  int64_t first_pos = 0;

  int32_t key_width() const { return n_kv_heads * head_dim; }  // floats per token
};

// Whether the config snapshot of a store made elsewhere (a shard) matches `ours` closely enough to continue
// its keys.
using SameConfig = std::function<bool(const nlohmann::json& ours, const nlohmann::json& theirs)>;

// Settings of one writer session; not part of the store's identity.
struct WriteOptions {
  int zstd_level = 3;                            // 1..19 (negative = zstd's fast levels)
  ShuffleMode shuffle = ShuffleMode::automatic;
  bool fsync = true;                             // false only for throw-away data (benchmarks)
  std::shared_ptr<FileIo> io;                    // null -> real POSIX file system
};

// One segment as recorded in the manifest.
struct SegmentInfo {
  std::string file;               // relative to the store directory: "segments/seg-000000.ilk"
  int64_t first_pos = 0;          // position of its first token in the document
  int64_t n_tokens = 0;
  uint64_t raw_key_bytes = 0;     // n_tokens * key_width * 2: the keys in the store dtype, uncompressed
  uint64_t stored_key_bytes = 0;  // the zstd frame of the keys
  uint64_t stored_token_bytes = 0;  // the zstd frame of the token ids (raw: 4 * n_tokens)
  uint64_t stored_bytes = 0;      // the whole file: header + token frame + key frame
  Shuffle shuffle = Shuffle::none;
  int32_t zstd_level = 0;
  uint32_t checksum = 0;          // CRC32C of the whole file
  uint32_t prefix_checksum = 0;   // CRC32C of header + token frame (lets tokens_at skip the keys)

  int64_t end_pos() const { return first_pos + n_tokens; }
};

// What append() did.
struct SegmentStats {
  SegmentInfo segment;
  uint64_t candidate_key_bytes[3] = {0, 0, 0};  // compressed key bytes per Shuffle tried (0 = not tried)
  int64_t n_nonfinite = 0;  // keys that became +-inf/NaN in the store dtype (f16 overflows above 65504)
  double encode_seconds = 0;  // dtype conversion + shuffle + zstd
  double write_seconds = 0;   // segment file + manifest, including fsyncs
};

// The opaque caller state (e.g. the streaming KV cache at the end of the document).
struct StateInfo {
  std::string file;  // "state-000003.bin"
  int64_t generation = 0;
  uint64_t size = 0;
  uint32_t checksum = 0;  // CRC32C of the file
};

struct StoreStats {
  int64_t n_segments = 0;
  int64_t n_tokens = 0;
  uint64_t raw_key_bytes = 0;
  uint64_t stored_key_bytes = 0;
  uint64_t stored_bytes = 0;  // all segment files
  uint64_t state_bytes = 0;
  // raw_key_bytes / stored_key_bytes (0 when empty)
  double key_compression_ratio() const {
    return stored_key_bytes ? static_cast<double>(raw_key_bytes) / static_cast<double>(stored_key_bytes) : 0.0;
  }
};

// One decoded segment. Exactly one of keys_f32 / keys_16 is filled, per `format`.
struct Segment {
  int64_t first_pos = 0;
  int64_t n_tokens = 0;
  int32_t key_width = 0;
  KeyFormat format = KeyFormat::f32;
  KeyLayout layout = KeyLayout::token_major;  // of keys_f32
  std::vector<float> keys_f32;     // F32 [n_tokens, key_width] when format == f32 ([key_width, n_tokens] if channel-major)
  std::vector<uint16_t> keys_16;   // F16|BF16 [n_tokens, key_width] bit patterns otherwise (or channel-major)
  std::vector<int32_t> tokens;     // [n_tokens]
};

}  // namespace ilre::storage
