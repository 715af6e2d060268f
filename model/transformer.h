// The forward pass: embeddings, decoder layers, output head — and the pieces ILRe needs to stop early.
//
// One Forward object owns the scratch buffers of one sequence of calls (not thread-safe; it parallelises
// internally over the ComputePool). Layer indices are model layers; a KvCache holding layers [0, n) lets
// run_layers execute any range [l_begin, l_end) with l_end <= n.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "model/kernels/compute_pool.h"
#include "model/dca.h"
#include "model/kv_cache.h"
#include "model/model.h"
#include "model/kernels/ops.h"

namespace ilre::model {

// llama_cpp: round where llama.cpp's CPU backend rounds (activations quantised to the weight's partner
// format, GELU through its F16 table) so logits agree with llama.cpp. exact: F32 activations against
// dequantised weights and the exact tanh GELU — slower, and the check on the maths itself.
enum class Numerics { llama_cpp, exact };

// "llama_cpp" | "exact" (config decode.numerics, CLI --numerics); nullopt for anything else.
inline std::optional<Numerics> numerics_from_name(std::string_view name) {
  if (name == "llama_cpp") return Numerics::llama_cpp;
  if (name == "exact") return Numerics::exact;
  return std::nullopt;
}

class Forward {
 public:
  Forward(const Model& model, ComputePool& pool, Numerics numerics = Numerics::llama_cpp);

  const Model& model() const { return model_; }
  const HParams& hparams() const { return model_.hparams(); }

  // hidden F32 [n, n_embd] <- scaled token embeddings. Throws out_of_range for an id outside the vocabulary.
  void embed(std::span<const TokenId> tokens, float* hidden);

  // Runs layers [l_begin, l_end) on hidden F32 [n, n_embd] in place; each layer appends the batch's K/V to
  // its cache and attends over everything the cache holds (causal by position, sliding window where the
  // layer has one).
  void run_layers(float* hidden, std::span<const int32_t> pos, KvCache& cache, int64_t l_begin, int64_t l_end);

  // Layer il's attention inputs for hidden F32 [n, n_embd], without touching any cache:
  // q F32 [n, n_head*head_dim_k] (after QK-norm, RoPE and the query scale; kq_scale not applied) and
  // k F32 [n, n_head_kv*head_dim_k] (after QK-norm and RoPE). Either output may be null.
  // With rope = false both are returned before RoPE (the query scale is still applied): ILRe stores keys
  // that way so scoring can choose its positions later.
  void attention_inputs(int64_t il, const float* hidden, std::span<const int32_t> pos, float* q, float* k,
                        bool rope = true);

  // Applies layer il's RoPE to rows of q-like (n_heads heads) data at the given positions, in place.
  void apply_rope(int64_t il, float* x, int64_t n_heads, std::span<const int32_t> pos);

  // Dual chunk attention in the full-attention layers from the next call on (model/dca.h); nullopt: plain
  // RoPE. The cache must be filled under one setting: its keys are rotated by it.
  void set_dca(std::optional<Dca> dca) { dca_ = dca; }
  const std::optional<Dca>& dca() const { return dca_; }

  // Final norm and output projection of the given rows of hidden -> logits F32 [rows.size(), n_vocab].
  void logits(const float* hidden, std::span<const int64_t> rows, float* out);

 private:
  struct Scratch {
    std::vector<float> norm, q, k, v, attn, proj, gate, up;
    std::vector<float> q_successive, q_inter;  // DCA's other two query rotations
    std::vector<int32_t> dca_pos;
  };
  void ensure_scratch(int64_t n);
  void project_qkv(int64_t il, const float* normed, std::span<const int32_t> pos, int64_t n, float* q, float* k,
                   float* v, bool rope = true);
  void layer(int64_t il, float* hidden, std::span<const int32_t> pos, KvCache& cache);
  // RoPE of layer il's q and k under DCA: k at its key position, q in the three rotations of its regions.
  void dca_rope(int64_t il, std::span<const int32_t> pos, int64_t n);
  void rows_parallel(int64_t n, const std::function<void(int64_t row)>& fn);
  void mm(const WeightMatrix& w, const float* x, int64_t n, int64_t ldx, float* y, int64_t ldy);

  const Model& model_;
  ComputePool& pool_;
  Numerics numerics_;
  std::vector<Rope> rope_;  // per layer (local and global layers differ in base)
  std::optional<Dca> dca_;
  Scratch s_;
  int64_t scratch_rows_ = 0;
};

}  // namespace ilre::model
