#include "model/sampler.h"

#include <algorithm>
#include <cmath>

#include "ilre/error.h"

namespace ilre::model {

TokenId argmax(std::span<const float> logits) {
  if (logits.empty()) throw Exception(errc::invalid_argument, "argmax of empty logits");
  size_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i) {
    if (logits[i] > logits[best]) best = i;
  }
  return static_cast<TokenId>(best);
}

Sampler::Sampler(SamplerParams params) : params_(params), rng_(params.seed) {
  if (!std::isfinite(params.temperature)) throw Exception(errc::invalid_argument, "temperature must be finite");
  if (!(params.top_p > 0.0f)) throw Exception(errc::invalid_argument, "top_p must be > 0");
}

TokenId Sampler::sample(std::span<const float> logits) {
  if (params_.temperature <= 0.0f) return argmax(logits);
  const auto n = static_cast<int64_t>(logits.size());
  candidates_.resize(logits.size());
  for (int64_t i = 0; i < n; ++i) candidates_[static_cast<size_t>(i)] = {logits[static_cast<size_t>(i)], static_cast<TokenId>(i)};
  auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };

  // Top-k first (cheap partial sort), then temperature, softmax and the nucleus cut, as llama.cpp's chain.
  int64_t k = params_.top_k > 0 ? std::min<int64_t>(params_.top_k, n) : n;
  std::partial_sort(candidates_.begin(), candidates_.begin() + k, candidates_.end(), by_logit);
  candidates_.resize(static_cast<size_t>(k));

  const float max_logit = candidates_.front().first;
  std::vector<double> probs(candidates_.size());
  double sum = 0.0;
  for (size_t i = 0; i < candidates_.size(); ++i) {
    probs[i] = std::exp(static_cast<double>((candidates_[i].first - max_logit) / params_.temperature));
    sum += probs[i];
  }
  size_t keep = candidates_.size();
  if (params_.top_p < 1.0f) {
    double cum = 0.0;
    for (size_t i = 0; i < candidates_.size(); ++i) {
      cum += probs[i] / sum;
      if (cum >= params_.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  std::discrete_distribution<size_t> dist(probs.begin(), probs.begin() + static_cast<std::ptrdiff_t>(keep));
  return candidates_[dist(rng_)].second;
}

}  // namespace ilre::model
