#include "model/model.h"

#include <spdlog/spdlog.h>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "ilre/error.h"
#include "model/kernels/quant.h"

namespace ilre::model {
namespace {

std::string shape_str(int64_t a, int64_t b) { return "[" + std::to_string(a) + ", " + std::to_string(b) + "]"; }

[[noreturn]] void bad(const GgufFile& f, const std::string& what) {
  throw Exception(errc::bad_gguf, "'" + f.path() + "': " + what);
}

void check_computable(const GgufFile& f, const GgufTensor& t) {
  const GgmlTypeInfo& info = ggml_type_info(t.type);
  if (!info.computable) {
    throw Exception(errc::unsupported, "'" + f.path() + "': tensor '" + t.name + "' has type " +
                                           std::string(info.name) + ", which ilre cannot compute with");
  }
}

WeightMatrix matrix(const GgufFile& f, const std::string& name, int64_t n_in, int64_t n_out) {
  const GgufTensor& t = f.tensor(name);
  if (t.n_dims != 2 || t.ne[0] != n_in || t.ne[1] != n_out) {
    bad(f, "tensor '" + name + "' has shape " + t.shape_string() + ", expected " + shape_str(n_in, n_out));
  }
  check_computable(f, t);
  return WeightMatrix{t.type, t.data, n_in, n_out, t.row_bytes()};
}

// Rows [first, first + n) of w, in place: a ggml matrix's rows are contiguous, so a fused tensor (Phi-3's
// attn_qkv, its gate+up ffn_up) splits into views without copying weights.
WeightMatrix rows_of(const WeightMatrix& w, int64_t first, int64_t n) {
  return WeightMatrix{w.type, w.data + static_cast<size_t>(first) * w.row_bytes, w.n_in, n, w.row_bytes};
}

std::vector<float> vector_f32(const GgufFile& f, const std::string& name, int64_t n) {
  const GgufTensor& t = f.tensor(name);
  if (t.n_elements() != n || t.ne[0] != n) {
    bad(f, "tensor '" + name + "' has shape " + t.shape_string() + ", expected [" + std::to_string(n) + "]");
  }
  check_computable(f, t);
  std::vector<float> out(static_cast<size_t>(n));
  dequantize_row(t.type, t.data, out.data(), n);
  return out;
}

// FNV-1a over the tensor table and a sample of every tensor's bytes: cheap (milliseconds for any model size)
// and sensitive to a different quantisation, fine-tune or architecture.
class Fnv64 {
 public:
  void add(const void* data, size_t n) {
    const auto* p = static_cast<const uint8_t*>(data);
    for (size_t i = 0; i < n; ++i) h_ = (h_ ^ p[i]) * 1099511628211ull;
  }
  void add(const std::string& s) { add(s.data(), s.size()); }
  template <class T>
  void add_pod(const T& v) {
    add(&v, sizeof(v));
  }
  uint64_t value() const { return h_; }

 private:
  uint64_t h_ = 1469598103934665603ull;
};

std::string fingerprint_of(const GgufFile& f) {
  constexpr size_t kSample = 4096;
  Fnv64 h;
  for (const GgufTensor& t : f.tensors()) {
    h.add(t.name);
    h.add_pod(t.type);
    h.add_pod(t.ne);
    h.add(t.data, std::min(kSample, t.n_bytes));
    if (t.n_bytes > kSample) h.add(t.data + t.n_bytes - kSample, kSample);
  }
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(h.value()));
  return buf;
}

}  // namespace

std::shared_ptr<const Model> Model::load(const std::string& path) {
  std::shared_ptr<Model> m(new Model());
  m->file_ = GgufFile::open(path);
  const GgufFile& f = *m->file_;
  m->hparams_ = HParams::from_gguf(f);
  const HParams& hp = m->hparams_;
  m->vocab_ = Vocab::from_gguf(f);
  if (m->vocab_->n_tokens() != hp.n_vocab) {
    bad(f, "vocabulary has " + std::to_string(m->vocab_->n_tokens()) + " tokens but the model expects " +
               std::to_string(hp.n_vocab));
  }

  m->token_embd_ = matrix(f, "token_embd.weight", hp.n_embd, hp.n_vocab);
  m->output_ = f.find_tensor("output.weight") ? matrix(f, "output.weight", hp.n_embd, hp.n_vocab) : m->token_embd_;
  m->output_norm_ = vector_f32(f, "output_norm.weight", hp.n_embd);
  // llama.cpp (llama_model::get_rope_factors) prefers rope_freqs; phi3 never loads that tensor and takes
  // rope_factors_long when the context it runs at exceeds original_context_length, else rope_factors_short.
  // ilre runs every model at its trained context: a Session holds up to n_ctx_train tokens and ILRe's final
  // pass keeps document positions, so the choice is n_ctx_train against the original context, i.e.
  // llama.cpp at n_ctx = n_ctx_train (its default, n_ctx = 0). A 128k Phi-3 gets its long factors, a 4k
  // one has none.
  std::string factors_name;
  if (hp.arch == Arch::phi3) {
    factors_name = hp.n_ctx_train > hp.n_ctx_orig ? "rope_factors_long.weight" : "rope_factors_short.weight";
  } else {
    factors_name = "rope_freqs.weight";
  }
  if (f.find_tensor(factors_name)) {
    m->rope_freq_factors_ = vector_f32(f, factors_name, hp.n_rot / 2);
    for (float x : m->rope_freq_factors_) {
      if (!(x > 0.0f) || !std::isfinite(x)) {
        bad(f, "tensor '" + factors_name + "' holds a factor that is not a positive number");
      }
    }
    m->hparams_.has_rope_freq_factors = true;
  }

  m->layers_.resize(static_cast<size_t>(hp.n_layer));
  for (int64_t il = 0; il < hp.n_layer; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    LayerWeights& L = m->layers_[static_cast<size_t>(il)];
    L.attn_norm = vector_f32(f, p + "attn_norm.weight", hp.n_embd);
    if (f.find_tensor(p + "attn_qkv.weight")) {
      // Rows Q, then K, then V (llama.cpp's build_qkv takes them as views at those offsets).
      const WeightMatrix qkv =
          matrix(f, p + "attn_qkv.weight", hp.n_embd, hp.n_embd_q() + hp.n_embd_k() + hp.n_embd_v());
      L.wq = rows_of(qkv, 0, hp.n_embd_q());
      L.wk = rows_of(qkv, hp.n_embd_q(), hp.n_embd_k());
      L.wv = rows_of(qkv, hp.n_embd_q() + hp.n_embd_k(), hp.n_embd_v());
    } else {
      if (hp.arch == Arch::phi3 && !f.find_tensor(p + "attn_q.weight")) {
        bad(f, "required tensor '" + p + "attn_qkv.weight' (or " + p + "attn_q/k/v.weight) is missing");
      }
      L.wq = matrix(f, p + "attn_q.weight", hp.n_embd, hp.n_embd_q());
      L.wk = matrix(f, p + "attn_k.weight", hp.n_embd, hp.n_embd_k());
      L.wv = matrix(f, p + "attn_v.weight", hp.n_embd, hp.n_embd_v());
    }
    L.wo = matrix(f, p + "attn_output.weight", hp.n_head * hp.head_dim_v, hp.n_embd);
    if (hp.qkv_bias) {
      L.bq = vector_f32(f, p + "attn_q.bias", hp.n_embd_q());
      L.bk = vector_f32(f, p + "attn_k.bias", hp.n_embd_k());
      L.bv = vector_f32(f, p + "attn_v.bias", hp.n_embd_v());
    }
    L.ffn_norm = vector_f32(f, p + "ffn_norm.weight", hp.n_embd);
    if (hp.ffn_fused_gate_up) {
      // ggml_swiglu on the fused product: silu of the first n_ff outputs times the last n_ff.
      const WeightMatrix gate_up = matrix(f, p + "ffn_up.weight", hp.n_embd, 2 * hp.n_ff);
      L.gate = rows_of(gate_up, 0, hp.n_ff);
      L.up = rows_of(gate_up, hp.n_ff, hp.n_ff);
    } else {
      L.gate = matrix(f, p + "ffn_gate.weight", hp.n_embd, hp.n_ff);
      L.up = matrix(f, p + "ffn_up.weight", hp.n_embd, hp.n_ff);
    }
    L.down = matrix(f, p + "ffn_down.weight", hp.n_ff, hp.n_embd);
    if (hp.qk_norm) {
      L.q_norm = vector_f32(f, p + "attn_q_norm.weight", hp.head_dim_k);
      L.k_norm = vector_f32(f, p + "attn_k_norm.weight", hp.head_dim_k);
    }
    if (hp.post_norms) {
      L.post_attn_norm = vector_f32(f, p + "post_attention_norm.weight", hp.n_embd);
      L.post_ffn_norm = vector_f32(f, p + "post_ffw_norm.weight", hp.n_embd);
    }
  }
  m->fingerprint_ = fingerprint_of(f);
  spdlog::debug("loaded {} ({})", path, hp.summary());
  return m;
}

std::string Model::name() const {
  if (auto n = file_->get_string("general.name")) return *n;
  return std::filesystem::path(file_->path()).filename().string();
}

}  // namespace ilre::model
