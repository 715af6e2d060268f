// Scores context tokens by the attention the query pays them at the retrieval layer (ILRe §1.4).
//
// a[h,i,j] = softmax_j(q[h,i]·k[g(h),j]·scale) over all L context keys, per query head h and query token i;
// token score s[j] = agg_i agg_h a[h,i,j] (defaults: sum over heads, max over query tokens). The keys arrive
// block by block from disk, so the softmax is computed in two passes (max and sum, then normalised
// probabilities) and memory stays O(block x heads x query tokens) — never O(L x heads).
//
// Pass 1 may run on several threads: each observes its own blocks into its own SoftmaxStats, and the stats
// are merged in key order, so the scores do not depend on how many threads computed them.
#pragma once

#include <cstdint>
#include <cstddef>
#include <span>
#include <vector>

namespace ilre::retrieval {

enum class Aggregation { sum, max };

struct ScoreConfig {
  bool softmax = true;                     // false: raw q·k (GemFilter), one pass
  Aggregation over_heads = Aggregation::sum;
  Aggregation over_queries = Aggregation::sum;
  float kq_scale = 1.0f;                   // the model's attention scale (1 for Gemma, whose q carries it)
};

struct HeadLayout {
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim = 0;
};

// Per softmax column (query head x query token) of some keys: the largest logit and the sum of
// exp(logit - max). Merging two is exact up to rounding; merge in key order for reproducible bits.
struct SoftmaxStats {
  std::vector<float> max;
  std::vector<double> sum;
  int64_t observed = 0;

  void merge(const SoftmaxStats& later);
};

// Keys of n consecutive context tokens, width = n_head_kv*head_dim: token-major [n, width] (token j at
// data + j*width) or channel-major [width, n] (channel c at data + c*n, as a store's channel-shuffled
// segment decodes without a transpose). F32, or the store's own 16-bit bits (channel-major only), which
// are scored without being converted as a whole (model/kernels/key_logits.h).
struct KeyBlock {
  enum class Type : uint8_t { f32, f16, bf16 };
  const void* data = nullptr;
  int64_t n = 0;
  Type type = Type::f32;
  bool channel_major = false;
};

class QueryScorer {
 public:
  // q: F32 [n_q, n_head*head_dim], the query tokens' queries at the retrieval layer (post-RoPE).
  QueryScorer(std::span<const float> q, int64_t n_q, HeadLayout layout, ScoreConfig cfg);

  bool two_pass() const { return cfg_.softmax; }

  // Pass 1 (softmax only): the keys of consecutive context tokens.
  // The const form may run on several threads at once, each into its own stats from empty_stats();
  // absorb() then adds them to the scorer's, in key order.
  SoftmaxStats empty_stats() const;
  void observe(const KeyBlock& keys, SoftmaxStats& into) const;
  void absorb(const SoftmaxStats& stats);
  void observe(const float* keys, int64_t n) { observe(KeyBlock{.data = keys, .n = n}, stats_); }

  // Pass 2 (or the only pass): out[j] for each of the n keys of this block. Safe on several threads.
  void score(const KeyBlock& keys, float* out) const;
  void score(const float* keys, int64_t n, float* out) const { score(KeyBlock{.data = keys, .n = n}, out); }
  int64_t observed() const { return stats_.observed; }

 private:
  // Query rows grouped by KV head: rows [g] are F32 [group*n_q, head_dim], head-major within the group.
  std::vector<std::vector<float>> q_by_kv_;
  int64_t n_q_;
  HeadLayout layout_;
  ScoreConfig cfg_;
  SoftmaxStats stats_;  // columns ordered (kv head, head in group, query token)
};

}  // namespace ilre::retrieval
