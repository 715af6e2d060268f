#include "model/kernels/ops.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "model/kernels/ggml_cpu.h"
#include "model/kernels/isa.h"

#include "model/kernels/quant.h"

namespace ilre::model {

void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i] * x[i]);
  const float mean = static_cast<float>(sum / static_cast<double>(n));
  const float scale = 1.0f / std::sqrt(mean + eps);
  // ggml scales first and multiplies by the weight in a separate op: two roundings, kept here.
  for (int64_t i = 0; i < n; ++i) y[i] = (x[i] * scale) * w[i];
}

Rope::Rope(int64_t n_rot, RopeLayout layout, RopeParams params, std::span<const float> freq_factors, bool precise)
    : n_rot_(n_rot),
      layout_(layout),
      params_(params),
      freq_factors_(freq_factors),
      precise_(precise),
      theta_scale_(std::pow(params.freq_base, -2.0f / static_cast<float>(n_rot))) {}

namespace {

// Rotates pair i of every head by (cos_t[i], sin_t[i]); pairs are adjacent (normal) or n_pairs apart (NeoX).
ILRE_CLONES_V3 void rotate_pairs(float* x, int64_t n_heads, int64_t head_dim, int64_t n_pairs, bool adjacent,
                                 const float* cos_t, const float* sin_t) {
  const int64_t stride = adjacent ? 1 : n_pairs;
  for (int64_t h = 0; h < n_heads; ++h) {
    float* v = x + h * head_dim;
    for (int64_t i = 0; i < n_pairs; ++i) {
      const int64_t a = adjacent ? 2 * i : i;
      const float x0 = v[a];
      const float x1 = v[a + stride];
      // llama.cpp's FMA builds contract ggml's `x0*c - x1*s` and `x0*s + x1*c` into these fmas (the first
      // product fused, the second rounded); spelled out, the rounding no longer depends on this file's ISA.
      v[a] = std::fma(x0, cos_t[i], -(x1 * sin_t[i]));
      v[a + stride] = std::fma(x0, sin_t[i], x1 * cos_t[i]);
    }
  }
}

}  // namespace

void Rope::apply(float* x, int64_t n_heads, int64_t head_dim, int32_t pos) const {
  // ggml derives each angle by repeated multiplication rather than pow(): the same product order here keeps
  // positions in the tens of thousands within float rounding of llama.cpp.
  constexpr int64_t kMaxPairs = 512;
  std::array<float, kMaxPairs> cos_t{};
  std::array<float, kMaxPairs> sin_t{};
  const int64_t n_pairs = n_rot_ / 2;
  float theta = static_cast<float>(pos);
  for (int64_t i = 0; i < n_pairs; ++i) {
    const float ff = freq_factors_.empty() ? 1.0f : freq_factors_[static_cast<size_t>(i)];
    if (precise_) {
      const double inv_freq = std::pow(static_cast<double>(params_.freq_base), -2.0 * static_cast<double>(i) / static_cast<double>(n_rot_));
      const double t = static_cast<double>(params_.freq_scale) * static_cast<double>(pos) * inv_freq / ff;
      cos_t[static_cast<size_t>(i)] = static_cast<float>(std::cos(t) * params_.attn_factor);
      sin_t[static_cast<size_t>(i)] = static_cast<float>(std::sin(t) * params_.attn_factor);
      continue;
    }
    // ggml rounds cos and sin to float before scaling them by the attention factor (rope_yarn).
    const float t = params_.freq_scale * (theta / ff);
    cos_t[static_cast<size_t>(i)] = std::cos(t) * params_.attn_factor;
    sin_t[static_cast<size_t>(i)] = std::sin(t) * params_.attn_factor;
    theta *= theta_scale_;
  }
  rotate_pairs(x, n_heads, head_dim, n_pairs, layout_ == RopeLayout::normal, cos_t.data(), sin_t.data());
}

namespace {

float gelu_tanh(float x) {
  constexpr float kSqrt2OverPi = 0.79788456080286535587989211986876f;
  constexpr float kCoefA = 0.044715f;
  // The fma is the contraction llama.cpp's FMA builds make of ggml's `1.0f + GELU_COEF_A*x*x`.
  return 0.5f * x * (1.0f + std::tanh(kSqrt2OverPi * x * std::fma(kCoefA * x, x, 1.0f)));
}

// gelu(x) for every fp16 value, rounded to fp16: ggml evaluates GELU through exactly this table.
const std::vector<uint16_t>& gelu_table() {
  static const std::vector<uint16_t> table = [] {
    std::vector<uint16_t> t(65536);
    for (uint32_t i = 0; i < 65536; ++i) t[i] = fp32_to_fp16(gelu_tanh(fp16_to_fp32(static_cast<uint16_t>(i))));
    return t;
  }();
  return table;
}

}  // namespace

void geglu(const float* x, const float* g, float* y, int64_t n) {
  const std::vector<uint16_t>& table = gelu_table();
  // Blocks of rows through the dispatched half-precision conversions (F16C where the CPU has it: the same
  // bits as the portable ones), so only the table lookup stays one element at a time. y may alias x.
  constexpr int64_t kBlock = 256;
  uint16_t half[kBlock];
  float gelu[kBlock];
  for (int64_t i0 = 0; i0 < n; i0 += kBlock) {
    const int64_t m = std::min(kBlock, n - i0);
    fp32_to_fp16_row(x + i0, half, m);
    for (int64_t j = 0; j < m; ++j) half[j] = table[half[j]];
    fp16_to_fp32_row(half, gelu, m);
    for (int64_t j = 0; j < m; ++j) {
      const float xi = x[i0 + j];
      const float gx = xi <= -10.0f ? 0.0f : (xi >= 10.0f ? xi : gelu[j]);
      y[i0 + j] = gx * g[i0 + j];
    }
  }
}

void geglu_exact(const float* x, const float* g, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = gelu_tanh(x[i]) * g[i];
}

void swiglu(const float* x, const float* g, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] / (1.0f + std::exp(-x[i])) * g[i];
}

namespace {

uint32_t bits_of(float f) { return std::bit_cast<uint32_t>(f); }
float float_of(uint32_t u) { return std::bit_cast<float>(u); }

}  // namespace

float ggml_vector_expf(float x, bool avx512) {
  // exp(x) = 2^n * exp(b), n = round(x / ln 2) found by the 1.5 * 2^23 shift, b = x - n ln 2 in two parts
  // (Arm's optimized-routines scheme, which ggml adapted), then a degree-5 polynomial for exp(b).
  const float shift = 0x1.8p23f;
  const float z = std::fma(x, 0x1.715476p+0f, shift);
  const float n = z - shift;
  const float b = std::fma(-n, 0x1.7f7d1cp-20f, std::fma(-n, 0x1.62e4p-1f, x));
  const float u = b * b;
  const float p = std::fma(std::fma(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u, std::fma(0x1.555e66p-3f, b, 0x1.fffdb6p-2f));
  if (avx512) {
    // The polynomial includes its constant 1; vscalefps multiplies by 2^n exactly. Beyond |n| > 192 the
    // result is 0 or infinity (b is NaN for infinite x).
    if (std::fabs(n) > 192.0f) return n <= 0.0f ? 0.0f : std::numeric_limits<float>::infinity();
    const float j = std::fma(p, u, std::fma(0x1.ffffecp-1f, b, 1.0f));
    return std::ldexp(j, static_cast<int>(n));
  }
  // AVX2: 2^n built in the exponent bits of k, the result as k + k * j; the wide cases go through two
  // factors so that 2^n itself need not be representable.
  const float j = std::fma(p, u, 0x1.ffffecp-1f * b);
  const uint32_t e = bits_of(z) << 23;
  const float k = float_of(e + bits_of(1.0f));
  const float an = std::fabs(n);
  if (an > 192.0f) {
    const float s1 = float_of((n <= 0.0f ? 0x82000000u : 0u) + 0x7f000000u);
    return s1 * s1;
  }
  if (an > 126.0f) {
    const uint32_t g = n <= 0.0f ? 0x82000000u : 0u;
    const float s1 = float_of(g + 0x7f000000u);
    const float s2 = float_of(e - g);
    return std::fma(s2, j, s2) * s1;
  }
  return std::fma(k, j, k);
}

void swiglu_ggml(const float* x, const float* g, float* y, int64_t n) {
  const GgmlCpu& cpu = ggml_cpu();
  const int64_t lanes = cpu.exp_avx512 ? 16 : 8;
  const int64_t vectorised = cpu.exp_vector ? n / lanes * lanes : 0;
  for (int64_t i = 0; i < vectorised; ++i) {
    const float e = ggml_vector_expf(0.0f - x[i], cpu.exp_avx512);
    y[i] = x[i] / (1.0f + e) * g[i];
  }
  for (int64_t i = vectorised; i < n; ++i) y[i] = x[i] / (1.0f + std::exp(-x[i])) * g[i];
}

}  // namespace ilre::model
