// Scores context tokens by the attention the query pays them at the retrieval layer (ILRe §1.4).
//
// a[h,i,j] = softmax_j(q[h,i]·k[g(h),j]·scale) over all L context keys, per query head h and query token i;
// token score s[j] = agg_i agg_h a[h,i,j] (defaults: sum, sum). The keys arrive block by block from disk, so
// the softmax is computed in two passes (max and sum, then normalised probabilities) and memory stays
// O(block x heads x query tokens) — never O(L x heads).
#pragma once

#include <cstdint>
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

class QueryScorer {
 public:
  // q: F32 [n_q, n_head*head_dim], the query tokens' queries at the retrieval layer (post-RoPE).
  QueryScorer(std::span<const float> q, int64_t n_q, HeadLayout layout, ScoreConfig cfg);

  bool two_pass() const { return cfg_.softmax; }
  // Pass 1 (softmax only): keys F32 [n, n_head_kv*head_dim] of consecutive context tokens.
  void observe(const float* keys, int64_t n);
  // Pass 2 (or the only pass): out[j] for each of the n keys of this block.
  void score(const float* keys, int64_t n, float* out) const;
  int64_t observed() const { return observed_; }

 private:
  // Query rows grouped by KV head: rows [g] are F32 [group*n_q, head_dim], head-major within the group.
  std::vector<std::vector<float>> q_by_kv_;
  int64_t n_q_;
  HeadLayout layout_;
  ScoreConfig cfg_;
  std::vector<float> col_max_;   // per (kv head, head in group, query): running max logit
  std::vector<double> col_sum_;  // per column: sum of exp(logit - max)
  int64_t observed_ = 0;
};

}  // namespace ilre::retrieval
