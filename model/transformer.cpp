#include "model/transformer.h"

#include <cmath>
#include <functional>

#include "model/attention.h"
#include "ilre/error.h"
#include "model/kernels/matmul.h"
#include "model/kernels/matmul_exact.h"

namespace ilre::model {
namespace {

// Below this many rows an element-wise op is cheaper than waking the pool.
constexpr int64_t kParallelRows = 8;

}  // namespace

Forward::Forward(const Model& model, ComputePool& pool, Numerics numerics)
    : model_(model), pool_(pool), numerics_(numerics) {
  const HParams& hp = model.hparams();
  rope_.reserve(static_cast<size_t>(hp.n_layer));
  for (int64_t il = 0; il < hp.n_layer; ++il) {
    rope_.emplace_back(hp.n_rot, hp.rope_layout, hp.rope(il), model.rope_freq_factors(), numerics == Numerics::exact);
  }
}

void Forward::ensure_scratch(int64_t n) {
  if (n <= scratch_rows_) return;
  const HParams& hp = hparams();
  auto grow = [n](std::vector<float>& b, int64_t width) { b.resize(static_cast<size_t>(n * width)); };
  grow(s_.norm, hp.n_embd);
  grow(s_.q, hp.n_embd_q());
  grow(s_.k, hp.n_embd_k());
  grow(s_.v, hp.n_embd_v());
  grow(s_.attn, hp.n_head * hp.head_dim_v);
  grow(s_.proj, hp.n_embd);
  grow(s_.gate, hp.n_ff);
  grow(s_.up, hp.n_ff);
  scratch_rows_ = n;
}

void Forward::rows_parallel(int64_t n, const std::function<void(int64_t)>& fn) {
  if (n < kParallelRows) {
    for (int64_t r = 0; r < n; ++r) fn(r);
    return;
  }
  pool_.parallel_for(n, 1, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) fn(r);
  });
}

void Forward::mm(const WeightMatrix& w, const float* x, int64_t n, int64_t ldx, float* y, int64_t ldy) {
  if (numerics_ == Numerics::exact) matmul_exact(w, x, n, ldx, y, ldy, pool_);
  else matmul(w, x, n, ldx, y, ldy, pool_);
}

void Forward::embed(std::span<const TokenId> tokens, float* hidden) {
  const HParams& hp = hparams();
  for (TokenId t : tokens) {
    if (t < 0 || t >= hp.n_vocab) {
      throw Exception(errc::out_of_range, "token id " + std::to_string(t) + " is outside the vocabulary (" +
                                              std::to_string(hp.n_vocab) + ")");
    }
  }
  const auto n = static_cast<int64_t>(tokens.size());
  rows_parallel(n, [&](int64_t r) {
    float* row = hidden + r * hp.n_embd;
    weight_row(model_.token_embd(), tokens[static_cast<size_t>(r)], row);
    if (hp.embd_scale != 1.0f) {
      for (int64_t i = 0; i < hp.n_embd; ++i) row[i] *= hp.embd_scale;
    }
  });
}

void Forward::project_qkv(int64_t il, const float* normed, std::span<const int32_t> pos, int64_t n, float* q,
                          float* k, float* v, bool rope_on) {
  const HParams& hp = hparams();
  const LayerWeights& L = model_.layer(il);
  if (q) mm(L.wq, normed, n, hp.n_embd, q, hp.n_embd_q());
  if (k) mm(L.wk, normed, n, hp.n_embd, k, hp.n_embd_k());
  if (v) mm(L.wv, normed, n, hp.n_embd, v, hp.n_embd_v());
  if (hp.qkv_bias) {
    // ggml adds the bias as its own op, after the product and before any norm or RoPE.
    const auto add_bias = [n](float* x, const std::vector<float>& b) {
      const auto w = static_cast<int64_t>(b.size());
      for (int64_t r = 0; r < n; ++r) {
        for (int64_t i = 0; i < w; ++i) x[r * w + i] += b[static_cast<size_t>(i)];
      }
    };
    if (q) add_bias(q, L.bq);
    if (k) add_bias(k, L.bk);
    if (v) add_bias(v, L.bv);
  }
  const Rope& rope = rope_[static_cast<size_t>(il)];
  rows_parallel(n, [&](int64_t r) {
    const int32_t p = pos[static_cast<size_t>(r)];
    if (q) {
      float* qr = q + r * hp.n_embd_q();
      if (hp.qk_norm) {
        for (int64_t h = 0; h < hp.n_head; ++h) {
          rms_norm(qr + h * hp.head_dim_k, L.q_norm.data(), qr + h * hp.head_dim_k, hp.head_dim_k, hp.rms_eps);
        }
      }
      if (rope_on) rope.apply(qr, hp.n_head, hp.head_dim_k, p);
      if (hp.q_scale != 1.0f) {
        for (int64_t i = 0; i < hp.n_embd_q(); ++i) qr[i] *= hp.q_scale;
      }
    }
    if (k) {
      float* kr = k + r * hp.n_embd_k();
      if (hp.qk_norm) {
        for (int64_t h = 0; h < hp.n_head_kv; ++h) {
          rms_norm(kr + h * hp.head_dim_k, L.k_norm.data(), kr + h * hp.head_dim_k, hp.head_dim_k, hp.rms_eps);
        }
      }
      if (rope_on) rope.apply(kr, hp.n_head_kv, hp.head_dim_k, p);
    }
  });
}

void Forward::apply_rope(int64_t il, float* x, int64_t n_heads, std::span<const int32_t> pos) {
  const HParams& hp = hparams();
  const Rope& rope = rope_[static_cast<size_t>(il)];
  rows_parallel(static_cast<int64_t>(pos.size()), [&](int64_t r) {
    rope.apply(x + r * n_heads * hp.head_dim_k, n_heads, hp.head_dim_k, pos[static_cast<size_t>(r)]);
  });
}

void Forward::dca_rope(int64_t il, std::span<const int32_t> pos, int64_t n) {
  const HParams& hp = hparams();
  const Dca& d = *dca_;
  const auto width = static_cast<size_t>(n * hp.n_embd_q());
  s_.q_successive.assign(s_.q.begin(), s_.q.begin() + static_cast<std::ptrdiff_t>(width));
  s_.q_inter.assign(s_.q.begin(), s_.q.begin() + static_cast<std::ptrdiff_t>(width));
  std::vector<int32_t>& p = s_.dca_pos;
  p.resize(static_cast<size_t>(n));
  const auto map = [&](auto&& f) {
    for (int64_t r = 0; r < n; ++r) p[static_cast<size_t>(r)] = f(pos[static_cast<size_t>(r)]);
  };
  map([&](int32_t x) { return d.key_pos(x); });
  apply_rope(il, s_.k.data(), hp.n_head_kv, p);
  apply_rope(il, s_.q.data(), hp.n_head, p);  // intra-chunk position == key position
  map([&](int32_t x) { return d.successive_pos(x); });
  apply_rope(il, s_.q_successive.data(), hp.n_head, p);
  map([&](int32_t) { return d.inter_pos(); });
  apply_rope(il, s_.q_inter.data(), hp.n_head, p);
}

void Forward::attention_inputs(int64_t il, const float* hidden, std::span<const int32_t> pos, float* q, float* k,
                               bool rope) {
  const HParams& hp = hparams();
  const auto n = static_cast<int64_t>(pos.size());
  ensure_scratch(n);
  const LayerWeights& L = model_.layer(il);
  rows_parallel(n, [&](int64_t r) {
    rms_norm(hidden + r * hp.n_embd, L.attn_norm.data(), s_.norm.data() + r * hp.n_embd, hp.n_embd, hp.rms_eps);
  });
  project_qkv(il, s_.norm.data(), pos, n, q, k, nullptr, rope);
}

void Forward::layer(int64_t il, float* hidden, std::span<const int32_t> pos, KvCache& cache) {
  const HParams& hp = hparams();
  const LayerWeights& L = model_.layer(il);
  const auto n = static_cast<int64_t>(pos.size());
  const int64_t E = hp.n_embd;

  rows_parallel(n, [&](int64_t r) {
    rms_norm(hidden + r * E, L.attn_norm.data(), s_.norm.data() + r * E, E, hp.rms_eps);
  });
  // Sliding-window layers never see a distance past their window, so DCA leaves them alone.
  const bool dca = dca_ && !hp.is_swa(il);
  project_qkv(il, s_.norm.data(), pos, n, s_.q.data(), s_.k.data(), s_.v.data(), /*rope=*/!dca);
  if (dca) dca_rope(il, pos, n);
  cache.append(il, s_.k.data(), s_.v.data(), pos.data(), n);

  AttentionArgs a;
  a.q = s_.q.data();
  a.n_q = n;
  a.ldq = hp.n_embd_q();
  a.q_pos = pos;
  a.k = cache.keys(il);
  a.v = cache.values(il);
  a.kv_type = cache.type();
  a.ldk = cache.k_width();
  a.ldv = cache.v_width();
  a.kv_pos = cache.positions(il);
  a.n_head = hp.n_head;
  a.n_head_kv = hp.n_head_kv;
  a.head_dim_k = hp.head_dim_k;
  a.head_dim_v = hp.head_dim_v;
  a.kq_scale = hp.kq_scale;
  a.window = hp.is_swa(il) ? hp.sliding_window : 0;
  a.out = s_.attn.data();
  a.ldo = hp.n_head * hp.head_dim_v;
  a.ggml_order = numerics_ == Numerics::llama_cpp && cache.type() == KvType::f32;
  if (dca) {
    a.q_successive = s_.q_successive.data();
    a.q_inter = s_.q_inter.data();
    a.dca_period = dca_->period();
  }
  attention(a, pool_);

  mm(L.wo, s_.attn.data(), n, a.ldo, s_.proj.data(), E);
  rows_parallel(n, [&](int64_t r) {
    float* o = s_.proj.data() + r * E;
    if (hp.post_norms) rms_norm(o, L.post_attn_norm.data(), o, E, hp.rms_eps);
    float* x = hidden + r * E;
    for (int64_t i = 0; i < E; ++i) x[i] += o[i];
    rms_norm(x, L.ffn_norm.data(), s_.norm.data() + r * E, E, hp.rms_eps);
  });

  mm(L.gate, s_.norm.data(), n, E, s_.gate.data(), hp.n_ff);
  mm(L.up, s_.norm.data(), n, E, s_.up.data(), hp.n_ff);
  rows_parallel(n, [&](int64_t r) {
    float* g = s_.gate.data() + r * hp.n_ff;
    const float* u = s_.up.data() + r * hp.n_ff;
    if (hp.ffn_act == FfnActivation::gelu_tanh) {
      if (numerics_ == Numerics::exact) geglu_exact(g, u, g, hp.n_ff);
      else geglu(g, u, g, hp.n_ff);
    }
    else if (numerics_ == Numerics::exact) swiglu(g, u, g, hp.n_ff);
    else swiglu_ggml(g, u, g, hp.n_ff);
  });
  mm(L.down, s_.gate.data(), n, hp.n_ff, s_.proj.data(), E);
  rows_parallel(n, [&](int64_t r) {
    float* d = s_.proj.data() + r * E;
    if (hp.post_norms) rms_norm(d, L.post_ffn_norm.data(), d, E, hp.rms_eps);
    float* x = hidden + r * E;
    for (int64_t i = 0; i < E; ++i) x[i] += d[i];
  });
}

void Forward::run_layers(float* hidden, std::span<const int32_t> pos, KvCache& cache, int64_t l_begin,
                         int64_t l_end) {
  if (l_begin < 0 || l_end > cache.n_layers() || l_begin > l_end) {
    throw Exception(errc::invalid_argument, "run_layers: range [" + std::to_string(l_begin) + ", " +
                                                std::to_string(l_end) + ") does not fit a cache of " +
                                                std::to_string(cache.n_layers()) + " layers");
  }
  ensure_scratch(static_cast<int64_t>(pos.size()));
  for (int64_t il = l_begin; il < l_end; ++il) layer(il, hidden, pos, cache);
}

void Forward::logits(const float* hidden, std::span<const int64_t> rows, float* out) {
  const HParams& hp = hparams();
  const auto n = static_cast<int64_t>(rows.size());
  ensure_scratch(n);
  rows_parallel(n, [&](int64_t r) {
    rms_norm(hidden + rows[static_cast<size_t>(r)] * hp.n_embd, model_.output_norm().data(),
             s_.norm.data() + r * hp.n_embd, hp.n_embd, hp.rms_eps);
  });
  mm(model_.output(), s_.norm.data(), n, hp.n_embd, out, hp.n_vocab);
  if (hp.final_logit_softcap > 0.0f) {
    const float c = hp.final_logit_softcap;
    for (int64_t i = 0; i < n * hp.n_vocab; ++i) out[i] = std::tanh(out[i] / c) * c;
  }
}

}  // namespace ilre::model
