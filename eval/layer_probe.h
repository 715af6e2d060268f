// Streaming prefill through every layer at once, keeping each layer's pre-RoPE keys: what calibration and
// the layer-sweeping baselines need (one pass over a haystack instead of one per layer).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "model/kv_cache.h"
#include "model/model.h"
#include "model/transformer.h"

namespace ilre::eval {

struct ProbeSettings {
  int64_t sink = 64;
  int64_t window = 1024;
  int64_t chunk = 512;
  int64_t last_layer = -1;  // keys and queries up to this layer only (-1: every layer); the rest is not run
};

class LayerProbe {
 public:
  LayerProbe(const model::Model& model, model::ComputePool& pool, ProbeSettings settings);

  // Streams the document; afterwards keys(l) is F32 [n, n_head_kv*head_dim] for every layer l.
  void run(std::span<const model::TokenId> document);
  // Queries of `query` (following the document) at every layer: F32 [n_q, n_head*head_dim] per layer.
  std::vector<std::vector<float>> encode_query(std::span<const model::TokenId> query);

  const std::vector<float>& keys(int64_t layer) const { return keys_[static_cast<size_t>(layer)]; }
  int64_t n_tokens() const { return next_pos_; }

 private:
  void forward(std::span<const model::TokenId> tokens, int64_t first, model::KvCache& cache,
               std::vector<std::vector<float>>* keys, std::vector<std::vector<float>>* queries);

  const model::Model& model_;
  ProbeSettings settings_;
  model::Forward forward_;
  model::KvCache cache_;
  std::vector<std::vector<float>> keys_;
  int64_t next_pos_ = 0;
  std::vector<float> hidden_;
};

}  // namespace ilre::eval
