#include "model/hparams.h"

#include <cmath>
#include <sstream>

#include "model/gguf/gguf.h"
#include "ilre/error.h"

namespace ilre::model {
namespace {

[[noreturn]] void bad(const GgufFile& f, const std::string& what) {
  throw Exception(errc::bad_gguf, "'" + f.path() + "': " + what);
}

int64_t positive(const GgufFile& f, const std::string& key, int64_t value) {
  if (value <= 0 || value > (int64_t{1} << 40)) bad(f, "key '" + key + "' = " + std::to_string(value) + " is out of range");
  return value;
}

// Keys such as head_count may be a per-layer array in some files; ilre supports the uniform case.
int64_t uniform_int(const GgufFile& f, const std::string& key, std::optional<int64_t> fallback) {
  const GgufValue* v = f.find(key);
  if (v == nullptr) {
    if (!fallback) bad(f, "required key '" + key + "' is missing");
    return *fallback;
  }
  if (v->is_array) {
    if (!v->is_integer() || v->ints.empty()) bad(f, "key '" + key + "' should be an integer, is " + v->describe());
    for (int64_t x : v->ints) {
      if (x != v->ints[0]) {
        throw Exception(errc::unsupported, "'" + f.path() + "': per-layer varying '" + key + "' is not supported");
      }
    }
    return v->ints[0];
  }
  return f.require_int(key);
}

void read_rope_scaling(const GgufFile& f, const std::string& a, HParams& hp) {
  const std::string type = f.get_string(a + ".rope.scaling.type").value_or("linear");
  double factor = f.get_float(a + ".rope.scaling.factor").value_or(0.0);
  if (factor == 0.0) factor = f.get_float(a + ".rope.scale_linear").value_or(0.0);
  if (type == "none") return;
  // llama.cpp treats "longrope" like "linear": its factors are tensors (rope_factors_long/short) and its
  // attention factor a key of its own.
  if (type == "linear" || type == "longrope") {
    if (factor < 0.0 || !std::isfinite(factor)) bad(f, "rope scaling factor " + std::to_string(factor) + " is invalid");
    hp.rope_global.freq_scale = factor == 0.0 ? 1.0f : static_cast<float>(1.0 / factor);
    return;
  }
  // Llama 3's "llama3" scaling is carried by the rope_freqs.weight tensor, which the converter writes with
  // scaling.type absent or "linear" with factor 0; other types change the attention maths.
  throw Exception(errc::unsupported, "'" + f.path() + "': rope scaling type '" + type + "' is not supported");
}

}  // namespace

HParams HParams::from_gguf(const GgufFile& f) {
  HParams hp;
  hp.arch_name = f.require_string("general.architecture");
  const std::string& a = hp.arch_name;
  if (a == "llama") hp.arch = Arch::llama;
  else if (a == "qwen2") hp.arch = Arch::qwen2;
  else if (a == "qwen3") hp.arch = Arch::qwen3;
  else if (a == "gemma3") hp.arch = Arch::gemma3;
  else if (a == "phi3") hp.arch = Arch::phi3;
  else {
    throw Exception(errc::unsupported,
                    "'" + f.path() + "': architecture '" + a + "' is not supported (llama, qwen2, qwen3, gemma3, phi3)");
  }

  hp.n_embd = positive(f, a + ".embedding_length", f.require_int(a + ".embedding_length"));
  hp.n_layer = positive(f, a + ".block_count", f.require_int(a + ".block_count"));
  if (hp.n_layer > 4096) bad(f, "block_count " + std::to_string(hp.n_layer) + " is implausible");
  hp.n_ctx_train = positive(f, a + ".context_length", f.require_int(a + ".context_length"));
  hp.n_ff = positive(f, a + ".feed_forward_length", uniform_int(f, a + ".feed_forward_length", std::nullopt));
  hp.n_head = positive(f, a + ".attention.head_count", uniform_int(f, a + ".attention.head_count", std::nullopt));
  hp.n_head_kv = positive(f, a + ".attention.head_count_kv", uniform_int(f, a + ".attention.head_count_kv", hp.n_head));
  if (hp.n_head % hp.n_head_kv != 0) {
    bad(f, "head_count " + std::to_string(hp.n_head) + " is not a multiple of head_count_kv " + std::to_string(hp.n_head_kv));
  }
  hp.head_dim_k = positive(f, "key_length", f.get_int(a + ".attention.key_length").value_or(hp.n_embd / hp.n_head));
  hp.head_dim_v = positive(f, "value_length", f.get_int(a + ".attention.value_length").value_or(hp.n_embd / hp.n_head));
  hp.n_rot = positive(f, "rope.dimension_count", f.get_int(a + ".rope.dimension_count").value_or(hp.head_dim_k));
  if (hp.n_rot > hp.head_dim_k || hp.n_rot % 2 != 0) bad(f, "rope dimension count " + std::to_string(hp.n_rot) + " is invalid");
  hp.rms_eps = static_cast<float>(f.require_float(a + ".attention.layer_norm_rms_epsilon"));
  if (!(hp.rms_eps > 0.0f && hp.rms_eps < 1.0f)) bad(f, "rms epsilon is out of range");
  hp.rope_global.freq_base = static_cast<float>(f.get_float(a + ".rope.freq_base").value_or(10000.0));
  if (!(hp.rope_global.freq_base > 1.0f) || !std::isfinite(hp.rope_global.freq_base)) bad(f, "rope.freq_base is invalid");
  read_rope_scaling(f, a, hp);
  // llama.cpp reads both keys for every architecture and multiplies the attention factor into the one it
  // passes to every RoPE (llama_context: yarn_attn_factor *= rope_attn_factor).
  const double attn_factor = f.get_float(a + ".rope.scaling.attn_factor").value_or(1.0);
  if (!(attn_factor > 0.0) || !std::isfinite(attn_factor)) bad(f, "rope.scaling.attn_factor is invalid");
  hp.rope_global.attn_factor = static_cast<float>(attn_factor);
  hp.n_ctx_orig = positive(f, a + ".rope.scaling.original_context_length",
                           f.get_int(a + ".rope.scaling.original_context_length").value_or(hp.n_ctx_train));

  const auto& tokens = f.get_string_array("tokenizer.ggml.tokens");
  hp.n_vocab = f.get_int(a + ".vocab_size").value_or(tokens ? static_cast<int64_t>(tokens->size()) : 0);
  if (hp.n_vocab <= 0) bad(f, "vocabulary size is unknown (no tokenizer.ggml.tokens)");

  hp.kq_scale = 1.0f / std::sqrt(static_cast<float>(hp.head_dim_k));
  hp.layer_is_swa.assign(static_cast<size_t>(hp.n_layer), false);

  if (hp.arch == Arch::llama) {
    hp.rope_layout = RopeLayout::normal;
    hp.ffn_act = FfnActivation::silu;
    if (hp.n_rot != hp.head_dim_k) bad(f, "llama models rotate the whole head (n_rot must equal key_length)");
  } else if (hp.arch == Arch::qwen2 || hp.arch == Arch::qwen3) {
    // Llama's block with NeoX RoPE; Qwen2 adds Q/K/V biases, Qwen3 drops them for per-head Q/K norms.
    hp.rope_layout = RopeLayout::neox;
    hp.ffn_act = FfnActivation::silu;
    hp.qkv_bias = hp.arch == Arch::qwen2;
    hp.qk_norm = hp.arch == Arch::qwen3;
  } else if (hp.arch == Arch::phi3) {
    // llama.cpp's phi3 graph: Llama's block with NeoX RoPE, Q/K/V fused in attn_qkv (or separate), gate and
    // up fused in ffn_up. Q is multiplied by 1/sqrt(head_dim) after RoPE and Q·K is taken unscaled; doing the
    // scaling on Q·K instead rounds differently.
    hp.rope_layout = RopeLayout::neox;
    hp.ffn_act = FfnActivation::silu;
    hp.ffn_fused_gate_up = true;
    hp.q_scale = 1.0f / std::sqrt(static_cast<float>(hp.head_dim_k));
    hp.kq_scale = 1.0f;
    if (hp.head_dim_v != hp.head_dim_k || hp.n_embd_q() != hp.n_embd) {
      bad(f, "phi3 models need key_length = value_length = embedding_length / head_count");
    }
    // phi3.attention.sliding_window is left unread: llama.cpp disables sliding-window attention for phi3
    // (load_arch_hparams sets n_swa = 0, "Phi SWA is currently disabled"), so every layer attends to the
    // whole context there and here.
  } else {  // gemma3
    hp.rope_layout = RopeLayout::neox;
    hp.ffn_act = FfnActivation::gelu_tanh;
    hp.embd_scale = std::sqrt(static_cast<float>(hp.n_embd));
    hp.qk_norm = true;
    hp.post_norms = true;
    // gemma_pytorch: query_pre_attn_scalar is head_dim for every size except 27B, which uses n_embd/n_head.
    hp.q_scale = hp.n_layer == 62 ? 1.0f / std::sqrt(static_cast<float>(hp.n_embd / hp.n_head))
                                  : 1.0f / std::sqrt(static_cast<float>(hp.head_dim_k));
    hp.kq_scale = 1.0f;
    hp.final_logit_softcap = static_cast<float>(f.get_float(a + ".final_logit_softcapping").value_or(0.0));
    hp.sliding_window = f.get_int(a + ".attention.sliding_window").value_or(0);
    if (hp.sliding_window < 0) bad(f, "sliding_window is negative");
    if (hp.sliding_window > 0) {
      hp.rope_swa.freq_base = static_cast<float>(f.get_float(a + ".rope.freq_base_swa").value_or(10000.0));
      hp.rope_swa.freq_scale = 1.0f;
      hp.rope_swa.attn_factor = hp.rope_global.attn_factor;
      const GgufValue* pattern = f.find(a + ".attention.sliding_window_pattern");
      if (pattern != nullptr && pattern->is_array) {
        if (!pattern->is_integer() || pattern->ints.size() < static_cast<size_t>(hp.n_layer)) {
          bad(f, "sliding_window_pattern array does not cover every layer");
        }
        for (int64_t il = 0; il < hp.n_layer; ++il) hp.layer_is_swa[static_cast<size_t>(il)] = pattern->ints[static_cast<size_t>(il)] != 0;
      } else {
        // Gemma 3: five local layers then one global layer, repeating.
        const int64_t n_pattern = pattern ? f.require_int(a + ".attention.sliding_window_pattern") : 6;
        for (int64_t il = 0; il < hp.n_layer; ++il) {
          hp.layer_is_swa[static_cast<size_t>(il)] = n_pattern == 0 || (il % n_pattern < n_pattern - 1);
        }
      }
    }
  }
  if (hp.sliding_window == 0) hp.rope_swa = hp.rope_global;
  return hp;
}

std::string HParams::summary() const {
  std::ostringstream s;
  s << arch_name << ": " << n_layer << " layers, n_embd " << n_embd << ", heads " << n_head << "/" << n_head_kv
    << " x " << head_dim_k << ", n_ff " << n_ff << ", vocab " << n_vocab << ", ctx " << n_ctx_train;
  if (n_ctx_orig != n_ctx_train) s << " (original " << n_ctx_orig << ")";
  if (sliding_window > 0) s << ", sliding window " << sliding_window;
  if (rope_global.attn_factor != 1.0f) s << ", rope attention factor " << rope_global.attn_factor;
  return s.str();
}

}  // namespace ilre::model
