#include "eval/layer_probe.h"

#include <algorithm>
#include <numeric>

namespace ilre::eval {

LayerProbe::LayerProbe(const model::Model& model, model::ComputePool& pool, ProbeSettings settings)
    : model_(model),
      settings_(settings),
      forward_(model, pool),
      cache_(model.hparams(), model.hparams().n_layer),
      keys_(static_cast<size_t>(model.hparams().n_layer)) {}

void LayerProbe::forward(std::span<const model::TokenId> tokens, int64_t first, model::KvCache& cache,
                         std::vector<std::vector<float>>* keys, std::vector<std::vector<float>>* queries) {
  const auto& hp = model_.hparams();
  const auto n = static_cast<int64_t>(tokens.size());
  std::vector<int32_t> pos(static_cast<size_t>(n));
  std::iota(pos.begin(), pos.end(), static_cast<int32_t>(first));
  hidden_.resize(static_cast<size_t>(n * hp.n_embd));
  forward_.embed(tokens, hidden_.data());
  const int64_t last = settings_.last_layer >= 0 ? std::min<int64_t>(settings_.last_layer, hp.n_layer - 1) : hp.n_layer - 1;
  for (int64_t l = 0; l <= last; ++l) {
    // The layer-l keys are those of its input, exactly what StreamingPrefill at l_R = l would store.
    if (keys) {
      auto& k = (*keys)[static_cast<size_t>(l)];
      const size_t at = k.size();
      k.resize(at + static_cast<size_t>(n * hp.n_embd_k()));
      forward_.attention_inputs(l, hidden_.data(), pos, nullptr, k.data() + at, /*rope=*/false);
    }
    if (queries) {
      auto& q = (*queries)[static_cast<size_t>(l)];
      q.resize(static_cast<size_t>(n * hp.n_embd_q()));
      forward_.attention_inputs(l, hidden_.data(), pos, q.data(), nullptr, /*rope=*/false);
    }
    if (l < last) forward_.run_layers(hidden_.data(), pos, cache, l, l + 1);
  }
}

void LayerProbe::run(std::span<const model::TokenId> document) {
  for (size_t b = 0; b < document.size(); b += static_cast<size_t>(settings_.chunk)) {
    const auto chunk = document.subspan(b, std::min(document.size() - b, static_cast<size_t>(settings_.chunk)));
    forward(chunk, next_pos_, cache_, &keys_, nullptr);
    cache_.evict_middle(settings_.sink, settings_.window);
    next_pos_ += static_cast<int64_t>(chunk.size());
  }
}

std::vector<std::vector<float>> LayerProbe::encode_query(std::span<const model::TokenId> query) {
  model::KvCache scratch = cache_;
  std::vector<std::vector<float>> q(static_cast<size_t>(model_.hparams().n_layer));
  forward(query, next_pos_, scratch, nullptr, &q);
  return q;
}

}  // namespace ilre::eval
