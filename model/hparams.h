// Hyper-parameters read from a GGUF file: what the architecture is, not how it is run.
// (Run-time settings — threads, chunk sizes, cache policy — live with their callers.)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ilre::model {

class GgufFile;

// Architectures differ only in the flags and optional tensors below, not in separate forward passes.
enum class Arch { llama, qwen2, qwen3, gemma3, phi3 };

// RoPE pairs dimension i with i+1 (llama.cpp "normal", GPT-J style) or with i + n_rot/2 ("neox").
enum class RopeLayout { normal, neox };

enum class FfnActivation { silu, gelu_tanh };

struct RopeParams {
  float freq_base = 10000.0f;
  float freq_scale = 1.0f;   // 1/factor for linear scaling
  float attn_factor = 1.0f;  // multiplies every cos and sin (ggml's mscale): LongRoPE's attention factor
};

struct HParams {
  Arch arch = Arch::llama;
  std::string arch_name;
  int64_t n_vocab = 0;
  int64_t n_ctx_train = 0;
  int64_t n_embd = 0;
  int64_t n_layer = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim_k = 0;  // per-head key/query width
  int64_t head_dim_v = 0;
  int64_t n_ff = 0;
  int64_t n_rot = 0;       // rotated dimensions per head
  float rms_eps = 1e-5f;
  RopeLayout rope_layout = RopeLayout::normal;
  RopeParams rope_global;  // full-attention layers
  RopeParams rope_swa;     // sliding-window layers (Gemma 3: base 10000)
  // Frequency divisors per rotated pair: Llama 3's rope_freqs.weight, or Phi-3's LongRoPE rope_factors_long /
  // rope_factors_short (whichever set the model's context selects, see Model::load).
  bool has_rope_freq_factors = false;
  int64_t n_ctx_orig = 0;  // rope.scaling.original_context_length (n_ctx_train when absent)

  int64_t sliding_window = 0;           // 0: no sliding-window layers
  std::vector<bool> layer_is_swa;       // per layer

  float embd_scale = 1.0f;   // Gemma multiplies embeddings by sqrt(n_embd)
  float q_scale = 1.0f;      // applied to Q after RoPE (Gemma's query_pre_attn_scalar)
  float kq_scale = 1.0f;     // applied to Q·K (llama: 1/sqrt(head_dim))
  bool qk_norm = false;      // RMSNorm on each Q and K head, before RoPE (Gemma 3, Qwen3)
  bool qkv_bias = false;     // Q, K and V projections add a bias (Qwen2)
  bool post_norms = false;   // RMSNorm after attention and after the FFN, before the residual add (Gemma)
  bool ffn_fused_gate_up = false;  // one ffn_up tensor of 2*n_ff rows, gate rows then up rows (Phi-3)
  FfnActivation ffn_act = FfnActivation::silu;
  float final_logit_softcap = 0.0f;

  int64_t n_embd_q() const { return n_head * head_dim_k; }
  int64_t n_embd_k() const { return n_head_kv * head_dim_k; }
  int64_t n_embd_v() const { return n_head_kv * head_dim_v; }
  const RopeParams& rope(int64_t layer) const {
    return is_swa(layer) ? rope_swa : rope_global;
  }
  bool is_swa(int64_t layer) const {
    return sliding_window > 0 && layer_is_swa[static_cast<size_t>(layer)];
  }

  // Reads and validates; throws Exception(bad_gguf / unsupported) naming the offending key.
  static HParams from_gguf(const GgufFile& file);
  std::string summary() const;  // one line for logs
};

}  // namespace ilre::model
