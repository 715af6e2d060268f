// Token sampling: greedy, temperature, top-k, top-p, seeded.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "model/tokenizer/vocab.h"

namespace ilre::model {

struct SamplerParams {
  float temperature = 0.0f;  // <= 0: greedy (argmax, lowest id on ties — as llama.cpp's greedy sampler)
  int32_t top_k = 40;        // <= 0: no top-k cut
  float top_p = 0.95f;       // >= 1: no nucleus cut
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(SamplerParams params);
  // Picks a token from logits F32 [n_vocab].
  TokenId sample(std::span<const float> logits);
  const SamplerParams& params() const { return params_; }

 private:
  SamplerParams params_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, TokenId>> candidates_;
};

TokenId argmax(std::span<const float> logits);

}  // namespace ilre::model
