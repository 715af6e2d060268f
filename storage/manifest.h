// manifest.json: the one file that says what a store holds. Rewritten atomically after every completed
// segment, state write and notes change; carries a CRC32C of its own canonical content. See FORMAT.md.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ilre/error.h"
#include "storage/store_types.h"

namespace ilre::storage {

inline constexpr int32_t kManifestFormatVersion = 1;
inline constexpr std::string_view kManifestFile = "manifest.json";
inline constexpr std::string_view kSegmentsDir = "segments";
inline constexpr std::string_view kLockFile = "writer.lock";
inline constexpr std::string_view kFormatName = "ilre-key-store";

struct Manifest {
  StoreMeta meta;
  std::string created_at;  // ISO 8601 UTC
  std::string updated_at;
  int32_t zstd_level = 3;  // of the last writer session (each segment records its own)
  ShuffleMode shuffle_mode = ShuffleMode::automatic;
  std::vector<SegmentInfo> segments;
  int64_t n_tokens = 0;
  std::optional<StateInfo> state;
  int64_t state_generation = 0;  // last generation handed out; state files are state-<generation>.bin
};

// "segments/seg-000042.ilk", "state-000003.bin"
std::string segment_file_name(size_t index);
std::string state_file_name(int64_t generation);
bool is_segment_file_name(std::string_view name);  // "seg-<digits>.ilk" (the base name)
bool is_state_file_name(std::string_view name);    // "state-<digits>.bin"

std::string now_iso8601();

// JSON text with the "checksum" field, ready to write.
std::string manifest_to_text(const Manifest& m);

// Parses and validates a manifest (format, version, checksum, fields, segment continuity). Errors:
// unsupported (newer format version), checksum_mismatch (not JSON, no or wrong checksum), bad_json
// (checksum right but fields wrong). `path` names the file in messages.
Result<Manifest> manifest_from_text(std::string_view text, const std::string& path);

// Reads dir/manifest.json and parses it. A missing file -> io_failed "not an ilre store".
Result<Manifest> load_manifest(const std::filesystem::path& dir);

// Totals over the segments and state of `m`.
StoreStats store_stats_of(const Manifest& m);

// Every file the manifest names exists with its recorded size (one stat each; contents are not read).
// Missing -> io_failed naming the file; wrong size -> checksum_mismatch naming it.
Result<void> check_store_files(const std::filesystem::path& dir, const Manifest& m);

}  // namespace ilre::storage
