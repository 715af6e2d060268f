// Element-wise and per-row operations of the forward pass, each rounding the way ggml's CPU backend does so
// that logits agree with llama.cpp.
#pragma once

#include <cstdint>
#include <span>

#include "model/hparams.h"

namespace ilre::model {

// y[i] = x[i] / sqrt(mean(x^2) + eps) * w[i] over n elements; the mean is accumulated in double like ggml.
// y may alias x.
void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps);

// Rotation for one set of RoPE parameters and frequency factors; thread-compatible, allocation-free per call.
// precise = false derives the angles as ggml does (F32, repeated multiplication), which llama.cpp parity
// needs; precise = true computes them in double, which matters at positions in the thousands (the F32 angle
// of token 3,000 is off by ~1e-4 rad and the error grows with the position).
class Rope {
 public:
  Rope(int64_t n_rot, RopeLayout layout, RopeParams params, std::span<const float> freq_factors, bool precise);
  // Rotates the first n_rot dims of each of n_heads heads of width head_dim in place at position pos.
  void apply(float* x, int64_t n_heads, int64_t head_dim, int32_t pos) const;

 private:
  int64_t n_rot_;
  RopeLayout layout_;
  RopeParams params_;
  std::span<const float> freq_factors_;
  bool precise_;
  float theta_scale_;
};

// gelu(x) * g with ggml's tanh approximation evaluated through its fp16 lookup table.
void geglu(const float* x, const float* g, float* y, int64_t n);
// gelu(x) * g with the tanh approximation evaluated in F32 (no table).
void geglu_exact(const float* x, const float* g, float* y, int64_t n);
// silu(x) * g with the C library's expf.
void swiglu(const float* x, const float* g, float* y, int64_t n);
// silu(x) * g as ggml computes it on this CPU (ggml_cpu.h): whole vectors of 16 (AVX-512) or 8 (AVX2)
// elements through ggml's polynomial exp, the rest through expf.
void swiglu_ggml(const float* x, const float* g, float* y, int64_t n);
// ggml's vectorised exp for one lane: the AVX-512 form (avx512 = true) or the AVX2/FMA form. Both are
// within 1.5 ulp of exp(x); they differ from each other and from expf in the last bit.
float ggml_vector_expf(float x, bool avx512);

}  // namespace ilre::model
