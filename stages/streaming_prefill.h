// The model side of ILRe's ingest: streaming chunked prefill through layers 0..l_R-1 with a sink + window
// cache per layer (Λ-shaped mask, O(S+W) memory per layer), then layer l_R's keys for every token.
// The prefill stage drives it chunk by chunk; ask() resumes it from the saved state to encode a question.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <span>
#include <vector>

#include "model/kv_cache.h"
#include "model/model.h"
#include "model/transformer.h"

namespace ilre::stages {

// Where the streamed layers put the tokens (config prefill.positions). absolute: at their document positions.
// cache: StreamingLLM's positions inside the rolling cache — the sink right before the oldest window entry —
// so no distance a layer sees exceeds S + W + C, however long the document.
enum class PrefillPositions { absolute, cache };
std::optional<PrefillPositions> prefill_positions_from_name(std::string_view name);
std::string_view prefill_positions_name(PrefillPositions p);

struct PrefillSettings {
  int64_t layer = 0;   // l_R
  int64_t sink = 64;   // S
  int64_t window = 1024;  // W
  int64_t chunk = 512;    // C
  model::Numerics numerics = model::Numerics::llama_cpp;
  PrefillPositions positions = PrefillPositions::absolute;

  // Clamps S + W + C into the model's trained context (the streaming cache never spans more than that).
  PrefillSettings clamped(const model::HParams& hp) const;
};

class StreamingPrefill {
 public:
  StreamingPrefill(const model::Model& model, model::ComputePool& pool, PrefillSettings settings);
  // Resumes from save_state() of an earlier run over the same model and settings.
  StreamingPrefill(const model::Model& model, model::ComputePool& pool, PrefillSettings settings,
                   std::span<const uint8_t> state);

  // Feeds the next tokens of the document (any count; split into chunks internally) and appends their
  // layer-l_R keys, F32 [n, n_head_kv*head_dim] before RoPE, to keys.
  void run(std::span<const model::TokenId> tokens, std::vector<float>& keys);

  // Same without layer l_R's keys: the warm-up of a shard, whose caches must reach the state a sequential
  // run has at the shard's start.
  void advance(std::span<const model::TokenId> tokens);

  // Continues at `pos` (> next_position(), on a chunk boundary) with only the sink in the caches, as if the
  // tokens in between had been streamed and evicted. Under the Λ mask the caches forget them again after
  // receptive_field() tokens, so streaming from `pos` - receptive_field() on gives exactly the keys and
  // state of a run that never jumped (stages/prefill.h ShardRange).
  void jump_to(int64_t pos);

  // Tokens after which a jump no longer shows: every layer below l_R reaches only W tokens (rounded up to
  // whole chunks) into the layer before it, so l_R of those reach back to the first that still matters.
  int64_t receptive_field() const;

  // Queries of the given tokens at layer l_R as if they followed the document, without changing the state:
  // F32 [n, n_head*head_dim], before RoPE, query scale applied.
  std::vector<float> encode_query(std::span<const model::TokenId> tokens);

  int64_t next_position() const { return next_pos_; }
  const PrefillSettings& settings() const { return settings_; }
  std::vector<uint8_t> save_state() const;
  size_t cache_bytes() const { return cache_.bytes(); }
  int64_t cache_tokens() const { return settings_.layer > 0 ? cache_.size(0) : 0; }

 private:
  // Streams tokens chunk by chunk; appends layer-l_R keys to *keys unless it is null.
  void stream(std::span<const model::TokenId> tokens, std::vector<float>* keys);
  // cache positions: keeps the sink's keys as computed at 0..S-1, once the caches first hold them.
  void capture_sink();
  // cache positions: turns the sink's keys to sit right before the oldest entry after it in `cache`.
  void place_sink(model::KvCache& cache, int64_t first_pos);
  // One chunk through layers 0..l_R-1 on `cache`; leaves the layer-l_R input in hidden_.
  void forward_chunk(std::span<const model::TokenId> tokens, int64_t first_pos, model::KvCache& cache,
                     std::vector<int32_t>& pos);

  const model::Model& model_;
  PrefillSettings settings_;
  model::Forward forward_;
  model::KvCache cache_;
  int64_t next_pos_ = 0;
  std::vector<float> hidden_;
  // cache positions: per streamed layer, the sink's keys at positions 0..S-1 (F32 [sink_rows_, k_width]).
  // RoPE is relative, so turning these by the shift places the sink anywhere with one rounding, never a
  // rounding per chunk. Part of the saved state.
  std::vector<std::vector<float>> sink_keys_;
  int64_t sink_rows_ = 0;
};

}  // namespace ilre::stages
