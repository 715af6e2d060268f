// merge_stores: one document's store from the shard stores of a sharded ingest (`ilre ingest --shards K` in
// one process, or `--shard i/K` on K machines and `ilre merge`).
//
// Shard k holds the tokens [first_k, first_{k+1}) of the document (StoreMeta::first_pos), made by the same
// model at the same layer with the same config; given in order they must cover [0, n) with no gap or
// overlap. The merged store lists every shard's segments in order (each file checked against its checksum,
// then copied and renumbered; the segment files themselves are unchanged, so a merge of bit-identical shards
// is bit-identical to a sequential ingest), the last shard's state (the streaming state at the document's
// end) and the notes that `merge_notes` makes of the shards' notes (default: the last shard's).
//
// All or nothing: `out` must not exist or be empty, and on any error it is left as it was.
#pragma once

#include <filesystem>
#include <functional>
#include <span>

#include <nlohmann/json.hpp>

#include "ilre/error.h"
#include "storage/store_types.h"

namespace ilre::storage {

struct MergeOptions {
  WriteOptions write;
  // Whether a shard's config snapshot matches the first shard's closely enough for its keys to continue
  // them (the caller knows which settings shape the keys); unset: the snapshots must be equal.
  SameConfig same_config;
  // Gets the shards' notes in order and the merged token count; an error refuses the merge (e.g. a shard
  // missing at the end). Unset: the last shard's notes.
  std::function<Result<nlohmann::json>(std::span<const nlohmann::json> shard_notes, int64_t n_tokens)> merge_notes;
};

Result<StoreStats> merge_stores(const std::filesystem::path& out, std::span<const std::filesystem::path> shards,
                                MergeOptions options = {});

}  // namespace ilre::storage
