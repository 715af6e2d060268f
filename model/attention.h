// Causal multi-head attention (GQA, optional sliding window) of a batch of queries over cached keys/values.
#pragma once

#include <cstdint>
#include <span>

#include "model/kernels/compute_pool.h"
#include "model/kv_cache.h"

namespace ilre::model {

struct AttentionArgs {
  const float* q = nullptr;            // F32 [n_q, n_head*head_dim_k], rows ldq apart
  int64_t n_q = 0;
  int64_t ldq = 0;
  std::span<const int32_t> q_pos;      // [n_q]
  const void* k = nullptr;             // kv_type [n_kv, n_head_kv*head_dim_k], rows ldk elements apart, post-RoPE
  const void* v = nullptr;             // kv_type [n_kv, n_head_kv*head_dim_v], rows ldv elements apart
  KvType kv_type = KvType::f32;
  int64_t ldk = 0;
  int64_t ldv = 0;
  std::span<const int32_t> kv_pos;     // [n_kv], non-decreasing
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim_k = 0;
  int64_t head_dim_v = 0;
  float kq_scale = 1.0f;
  int64_t window = 0;                  // > 0: a query at p sees keys at p-window+1 .. p only
  float* out = nullptr;                // F32 [n_q, n_head*head_dim_v], rows ldo apart
  int64_t ldo = 0;
  // F32 cache only: sum and exponentiate in llama.cpp's order on this CPU (ggml_cpu.h) instead of the
  // blocked online softmax: what llama.cpp's --cache-type-k/v f32 computes, bit for bit where the cache
  // slots are llama.cpp's cells (one sequence from position 0), slower at long contexts.
  bool ggml_order = false;
  // Dual chunk attention (model/dca.h) when dca_period > 0: q holds the queries rotated at their
  // intra-chunk positions, q_successive and q_inter (same layout as q) at the previous-chunk and
  // older-chunk positions, and the keys were rotated at kv_pos mod dca_period. Which query meets a key
  // is decided by their chunks, kv_pos / dca_period against q_pos / dca_period. Not with ggml_order.
  const float* q_successive = nullptr;
  const float* q_inter = nullptr;
  int64_t dca_period = 0;
};

// out = softmax(q·kᵀ·kq_scale + mask)·v per head, where key j is visible to query i iff
// kv_pos[j] <= q_pos[i] (and q_pos[i] - kv_pos[j] < window when window > 0). A query that sees no key
// gets a zero output.
// With an F16 cache the arithmetic follows llama.cpp's (non flash-attention) CPU path: q is rounded to F16
// before q·kᵀ and the normalised probabilities are rounded to F16 before they multiply v. With an F32 cache
// the softmax is computed online over key tiles in exact F32.
void attention(const AttentionArgs& args, ComputePool& pool);

}  // namespace ilre::model
