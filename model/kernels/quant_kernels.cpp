// Portable kernels, activation rounding and the per-type dispatch. The AVX2 tiles live in
// quant_kernels_avx2.cpp.
#include "model/kernels/quant_kernels.h"

#include <algorithm>
#include <cstdlib>
#include <string_view>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "ilre/error.h"
#include "model/kernels/ggml_cpu.h"
#include "model/kernels/isa.h"
#include "model/kernels/quant.h"

namespace ilre::model::kernels {

using namespace quant;

namespace {

constexpr size_t kRowAlign = 64;

size_t round_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// Activation rounding

#if ILRE_AVX2_KERNELS
ILRE_AVX2_BEGIN
namespace {

int64_t round_row_f16_avx2(const float* x, uint16_t* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), h);
  }
  return i;
}

}  // namespace
ILRE_AVX2_END
#endif

void round_row_f16(const float* x, uint16_t* y, int64_t n) {
  int64_t i = 0;
#if ILRE_AVX2_KERNELS
  if (avx2_kernels()) i = round_row_f16_avx2(x, y, n);
#endif
  for (; i < n; ++i) y[i] = float_to_half(x[i]);
}

void round_row_bf16(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = float_to_bf16_bits(x[i]);
}

#if ILRE_AVX2_KERNELS
ILRE_AVX2_BEGIN
namespace {

inline float hmax_abs(__m256 amax) {
  __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(amax, 1), _mm256_castps256_ps128(amax));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
  return _mm_cvtss_f32(m4);
}

// 32 int32 in four registers -> 32 int8 in element order (packs work per 128-bit lane; the permute fixes it).
inline __m256i pack_32_to_i8(const __m256i* q) {
  const __m256i p8 = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
  return _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

constexpr int kRoundEven = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

int quantize_block_q8_avx2(const float* x, int8_t* qs, float& d) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 v[4];
  __m256 amax = _mm256_setzero_ps();
  for (int k = 0; k < 4; ++k) {
    v[k] = _mm256_loadu_ps(x + 8 * k);
    amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v[k]));
  }
  const float max_scalar = hmax_abs(amax);
  d = max_scalar / 127.0f;
  const __m256 mul = _mm256_set1_ps(max_scalar != 0.0f ? 127.0f / max_scalar : 0.0f);
  __m256i q[4];
  for (int k = 0; k < 4; ++k) q[k] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[k], mul), kRoundEven));
  const __m256i sum4 = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(sum4), _mm256_extracti128_si256(sum4, 1));
  s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs), pack_32_to_i8(q));
  return _mm_cvtsi128_si32(s);
}

void quantize_superblock_q8_k_avx2(const float* x, int8_t* qs, int16_t* bsums, float& d) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 amax = _mm256_setzero_ps();
  for (int k = 0; k < kQKK; k += 8) amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + k)));
  const float max_abs = hmax_abs(amax);
  if (max_abs == 0.0f) {
    std::memset(qs, 0, kQKK);
    std::memset(bsums, 0, kQKK / 16 * sizeof(int16_t));
    d = 0.0f;
    return;
  }
  // The scale's sign comes from the first element of largest magnitude, as in the scalar reference.
  const __m256 target = _mm256_set1_ps(max_abs);
  float max = max_abs;
  for (int k = 0; k < kQKK; k += 8) {
    const __m256 ax = _mm256_andnot_ps(sign, _mm256_loadu_ps(x + k));
    const int hits = _mm256_movemask_ps(_mm256_cmp_ps(ax, target, _CMP_EQ_OQ));
    if (hits != 0) {
      max = x[k + __builtin_ctz(static_cast<unsigned>(hits))];
      break;
    }
  }
  const float iscale = -127.0f / max;
  const __m256 mul = _mm256_set1_ps(iscale);
  const __m256i limit = _mm256_set1_epi32(127);
  for (int k = 0; k < kQKK; k += 32) {
    __m256i q[4];
    for (int j = 0; j < 4; ++j) {
      const __m256 v = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + k + 8 * j), mul), kRoundEven);
      q[j] = _mm256_min_epi32(_mm256_cvtps_epi32(v), limit);
    }
    // Sums of the two 16-element groups of these 32 quants.
    const __m256i g0 = _mm256_add_epi32(q[0], q[1]);
    const __m256i g1 = _mm256_add_epi32(q[2], q[3]);
    const __m256i h = _mm256_hadd_epi32(g0, g1);
    const __m256i h2 = _mm256_hadd_epi32(h, h);  // lane 0/4: halves of group 0, lane 1/5: of group 1
    bsums[k / 16] = static_cast<int16_t>(_mm256_extract_epi32(h2, 0) + _mm256_extract_epi32(h2, 4));
    bsums[k / 16 + 1] = static_cast<int16_t>(_mm256_extract_epi32(h2, 1) + _mm256_extract_epi32(h2, 5));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs + k), pack_32_to_i8(q));
  }
  d = 1.0f / iscale;
}

}  // namespace
ILRE_AVX2_END
#endif

namespace {

// llama.cpp's AVX2 quantize_row_q8_0/q8_1 rule for one block: d = amax/127 (stored as fp16 by the caller),
// multiplier 127/amax (not 1/d), round half to even.
int quantize_block_q8_scalar(const float* x, int8_t* qs, float& d) {
  float amax = 0.0f;
  for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
  d = amax / 127.0f;
  const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
  int sum = 0;
  for (int j = 0; j < kQK; ++j) {
    qs[j] = static_cast<int8_t>(std::clamp(static_cast<int>(std::nearbyint(x[j] * id)), -128, 127));
    sum += qs[j];
  }
  return sum;
}

// ggml's quantize_row_q8_K_ref (the x86 backend uses it as is): the scale comes from the signed value of
// largest magnitude, quants are round-half-even of -127/max * x, and 16-element sums ride along.
void quantize_superblock_q8_k_scalar(const float* x, int8_t* qs, int16_t* bsums, float& d) {
  float max = 0.0f;
  float amax = 0.0f;
  for (int j = 0; j < kQKK; ++j) {
    const float ax = std::fabs(x[j]);
    if (ax > amax) {
      amax = ax;
      max = x[j];
    }
  }
  if (amax == 0.0f) {
    std::memset(qs, 0, kQKK);
    std::memset(bsums, 0, kQKK / 16 * sizeof(int16_t));
    d = 0.0f;
    return;
  }
  const float iscale = -127.0f / max;
  for (int j = 0; j < kQKK; ++j) {
    qs[j] = static_cast<int8_t>(std::min(127, static_cast<int>(std::nearbyint(iscale * x[j]))));
  }
  for (int g = 0; g < kQKK / 16; ++g) {
    int sum = 0;
    for (int l = 0; l < 16; ++l) sum += qs[16 * g + l];
    bsums[g] = static_cast<int16_t>(sum);
  }
  d = 1.0f / iscale;
}

}  // namespace

int quantize_block_q8(const float* x, int8_t* qs, float& d) {
#if ILRE_AVX2_KERNELS
  if (avx2_kernels()) return quantize_block_q8_avx2(x, qs, d);
#endif
  return quantize_block_q8_scalar(x, qs, d);
}

void quantize_superblock_q8_k(const float* x, int8_t* qs, int16_t* bsums, float& d) {
#if ILRE_AVX2_KERNELS
  if (avx2_kernels()) return quantize_superblock_q8_k_avx2(x, qs, bsums, d);
#endif
  quantize_superblock_q8_k_scalar(x, qs, bsums, d);
}

void quantize_row_q8_0(const float* x, BlockQ8_0* y, int64_t n) {
  for (int64_t i = 0; i < n / kQK; ++i) {
    float d;
    quantize_block_q8(x + i * kQK, y[i].qs, d);
    y[i].d = float_to_half(d);
  }
}

void quantize_row_q8_1(const float* x, BlockQ8_1* y, int64_t n) {
  for (int64_t i = 0; i < n / kQK; ++i) {
    float d;
    const int sum = quantize_block_q8(x + i * kQK, y[i].qs, d);
    y[i].d = float_to_half(d);
    y[i].s = float_to_half(d * static_cast<float>(sum));
  }
}

void quantize_row_q8_k(const float* x, BlockQ8_K* y, int64_t n) {
  for (int64_t i = 0; i < n / kQKK; ++i) quantize_superblock_q8_k(x + i * kQKK, y[i].qs, y[i].bsums, y[i].d);
}

// ---------------------------------------------------------------------------------------------------------
// Scalar dot products: integer sums inside a block, one float multiply-add per block (ggml's generic forms).

namespace {

inline int q4_0_value(const BlockQ4_0& b, int j) {
  return (j < 16 ? (b.qs[j] & 0xF) : (b.qs[j - 16] >> 4)) - 8;
}
inline int q4_1_value(const BlockQ4_1& b, int j) { return j < 16 ? (b.qs[j] & 0xF) : (b.qs[j - 16] >> 4); }
inline int q5_value(const uint8_t* qs, uint32_t qh, int j) {
  const int nib = j < 16 ? (qs[j] & 0xF) : (qs[j - 16] >> 4);
  return nib | static_cast<int>(((qh >> j) & 1u) << 4);
}

float dot_q4_0(int64_t n, const uint8_t* w, const uint8_t* a) {
  const auto* x = reinterpret_cast<const BlockQ4_0*>(w);
  const auto* y = reinterpret_cast<const BlockQ8_0*>(a);
  float sum = 0.0f;
  for (int64_t i = 0; i < n / kQK; ++i) {
    int isum = 0;
    for (int j = 0; j < kQK; ++j) isum += q4_0_value(x[i], j) * y[i].qs[j];
    sum += (half_to_float(x[i].d) * half_to_float(y[i].d)) * static_cast<float>(isum);
  }
  return sum;
}

float dot_q4_1(int64_t n, const uint8_t* w, const uint8_t* a) {
  const auto* x = reinterpret_cast<const BlockQ4_1*>(w);
  const auto* y = reinterpret_cast<const BlockQ8_1*>(a);
  float sum = 0.0f;
  for (int64_t i = 0; i < n / kQK; ++i) {
    int isum = 0;
    for (int j = 0; j < kQK; ++j) isum += q4_1_value(x[i], j) * y[i].qs[j];
    sum += (half_to_float(x[i].d) * half_to_float(y[i].d)) * static_cast<float>(isum) +
           half_to_float(x[i].m) * half_to_float(y[i].s);
  }
  return sum;
}

float dot_q5_0(int64_t n, const uint8_t* w, const uint8_t* a) {
  const auto* x = reinterpret_cast<const BlockQ5_0*>(w);
  const auto* y = reinterpret_cast<const BlockQ8_0*>(a);
  float sum = 0.0f;
  for (int64_t i = 0; i < n / kQK; ++i) {
    const uint32_t qh = load_u32(x[i].qh);
    int isum = 0;
    for (int j = 0; j < kQK; ++j) isum += (q5_value(x[i].qs, qh, j) - 16) * y[i].qs[j];
    sum += (half_to_float(x[i].d) * half_to_float(y[i].d)) * static_cast<float>(isum);
  }
  return sum;
}

float dot_q5_1(int64_t n, const uint8_t* w, const uint8_t* a) {
  const auto* x = reinterpret_cast<const BlockQ5_1*>(w);
  const auto* y = reinterpret_cast<const BlockQ8_1*>(a);
  float sum = 0.0f;
  for (int64_t i = 0; i < n / kQK; ++i) {
    const uint32_t qh = load_u32(x[i].qh);
    int isum = 0;
    for (int j = 0; j < kQK; ++j) isum += q5_value(x[i].qs, qh, j) * y[i].qs[j];
    sum += (half_to_float(x[i].d) * half_to_float(y[i].d)) * static_cast<float>(isum) +
           half_to_float(x[i].m) * half_to_float(y[i].s);
  }
  return sum;
}

float dot_q8_0(int64_t n, const uint8_t* w, const uint8_t* a) {
  const auto* x = reinterpret_cast<const BlockQ8_0*>(w);
  const auto* y = reinterpret_cast<const BlockQ8_0*>(a);
  float sum = 0.0f;
  for (int64_t i = 0; i < n / kQK; ++i) {
    int isum = 0;
    for (int j = 0; j < kQK; ++j) isum += x[i].qs[j] * y[i].qs[j];
    sum += (half_to_float(x[i].d) * half_to_float(y[i].d)) * static_cast<float>(isum);
  }
  return sum;
}

float dot_iq4_nl(int64_t n, const uint8_t* w, const uint8_t* a) {
  const auto* x = reinterpret_cast<const BlockIQ4_NL*>(w);
  const auto* y = reinterpret_cast<const BlockQ8_0*>(a);
  float sum = 0.0f;
  for (int64_t i = 0; i < n / kQK; ++i) {
    int isum = 0;
    for (int j = 0; j < kQK / 2; ++j) {
      isum += kIq4Values[x[i].qs[j] & 0xF] * y[i].qs[j] + kIq4Values[x[i].qs[j] >> 4] * y[i].qs[j + kQK / 2];
    }
    sum += (half_to_float(x[i].d) * half_to_float(y[i].d)) * static_cast<float>(isum);
  }
  return sum;
}

// IQ4_XS against Q8_K: per sub-block the table values times the activation, times the sub-block's scale,
// summed in integers over the super-block; one float multiply-add per super-block.
float dot_iq4_xs(int64_t n, const uint8_t* w, const uint8_t* a) {
  const auto* x = reinterpret_cast<const BlockIQ4_XS*>(w);
  const auto* y = reinterpret_cast<const BlockQ8_K*>(a);
  float sum = 0.0f;
  for (int64_t i = 0; i < n / kQKK; ++i) {
    int isum = 0;
    for (int ib = 0; ib < kQKK / kQK; ++ib) {
      const uint8_t* qs = x[i].qs + ib * (kQK / 2);
      const int8_t* q8 = y[i].qs + ib * kQK;
      int s = 0;
      for (int j = 0; j < kQK / 2; ++j) s += kIq4Values[qs[j] & 0xF] * q8[j] + kIq4Values[qs[j] >> 4] * q8[j + kQK / 2];
      isum += iq4_xs_scale(x[i], ib) * s;
    }
    sum += (half_to_float(x[i].d) * y[i].d) * static_cast<float>(isum);
  }
  return sum;
}

// Every K-quant against Q8_K: unpack the super-block, then sum q*y per 16-group times its scale in
// integers; the mins meet the precomputed 16-group sums of the activation (bsums).
template <class Block>
float dot_k(int64_t n, const uint8_t* w, const uint8_t* a) {
  const auto* x = reinterpret_cast<const Block*>(w);
  const auto* y = reinterpret_cast<const BlockQ8_K*>(a);
  UnpackedK u;
  float sum = 0.0f;
  for (int64_t i = 0; i < n / kQKK; ++i) {
    unpack_k(x[i], u);
    int isum = 0;
    int msum = 0;
    for (int g = 0; g < kQKK / 16; ++g) {
      int gsum = 0;
      for (int l = 0; l < 16; ++l) gsum += u.q[16 * g + l] * y[i].qs[16 * g + l];
      isum += u.scale[g] * gsum;
      msum += u.min[g] * y[i].bsums[g];
    }
    sum += (u.d * y[i].d) * static_cast<float>(isum) - (u.dmin * y[i].d) * static_cast<float>(msum);
  }
  return sum;
}

template <float (*to_float)(uint16_t)>
float dot_half(int64_t n, const uint8_t* w, const uint8_t* a) {
  const auto* x = reinterpret_cast<const uint16_t*>(w);
  const auto* y = reinterpret_cast<const uint16_t*>(a);
  float lanes[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int l = 0; l < 8; ++l) lanes[l] += to_float(x[i + l]) * to_float(y[i + l]);
  }
  for (; i < n; ++i) lanes[i % 8] += to_float(x[i]) * to_float(y[i]);
  float sum = 0.0f;
  for (float v : lanes) sum += v;
  return sum;
}

float dot_f32(int64_t n, const uint8_t* w, const uint8_t* a) {
  const auto* x = reinterpret_cast<const float*>(w);
  const auto* y = reinterpret_cast<const float*>(a);
  float lanes[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int l = 0; l < 8; ++l) lanes[l] += x[i + l] * y[i + l];
  }
  for (; i < n; ++i) lanes[i % 8] += x[i] * y[i];
  float sum = 0.0f;
  for (float v : lanes) sum += v;
  return sum;
}

float h2f(uint16_t h) { return half_to_float(h); }
float b2f(uint16_t h) { return bf16_bits_to_float(h); }

using DotFn = float (*)(int64_t, const uint8_t*, const uint8_t*);

DotFn scalar_dot(GgmlType type) {
  switch (type) {
    case GgmlType::F32: return dot_f32;
    case GgmlType::F16: return dot_half<h2f>;
    case GgmlType::BF16: return dot_half<b2f>;
    case GgmlType::Q4_0: return dot_q4_0;
    case GgmlType::IQ4_NL: return dot_iq4_nl;
    case GgmlType::IQ4_XS: return dot_iq4_xs;
    case GgmlType::Q4_1: return dot_q4_1;
    case GgmlType::Q5_0: return dot_q5_0;
    case GgmlType::Q5_1: return dot_q5_1;
    case GgmlType::Q8_0: return dot_q8_0;
    case GgmlType::Q2_K: return dot_k<BlockQ2_K>;
    case GgmlType::Q3_K: return dot_k<BlockQ3_K>;
    case GgmlType::Q4_K: return dot_k<BlockQ4_K>;
    case GgmlType::Q5_K: return dot_k<BlockQ5_K>;
    case GgmlType::Q6_K: return dot_k<BlockQ6_K>;
    default: return nullptr;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Portable matrix-product kernels: activations kept in ggml's activation format, one dot per output.

template <GgmlType kType>
size_t ggml_act_bytes(int64_t n) {
  return round_up(activation_row_bytes(kType, n), kRowAlign);
}

template <GgmlType kType>
void ggml_prepare(const float* x, uint8_t* dst, int64_t n) {
  prepare_ggml_activation(kType, x, dst, n);
}

template <GgmlType kType>
void ggml_import(const uint8_t* ggml_act, uint8_t* dst, int64_t n) {
  std::memcpy(dst, ggml_act, activation_row_bytes(kType, n));
}

template <GgmlType kType>
void scalar_tile(int64_t n, const uint8_t* w, size_t w_stride, int nr, const uint8_t* a, size_t a_stride, int nc,
                 float* y, int64_t ldy) {
  const DotFn dot = scalar_dot(kType);
  for (int c = 0; c < nc; ++c) {
    for (int r = 0; r < nr; ++r) y[c * ldy + r] = dot(n, w + r * w_stride, a + c * a_stride);
  }
}

template <GgmlType kType>
MatmulKernel scalar_kernel() {
  MatmulKernel k;
  k.act_bytes = ggml_act_bytes<kType>;
  k.prepare = ggml_prepare<kType>;
  k.import_ggml = ggml_import<kType>;
  k.tile = scalar_tile<kType>;
  k.max_rows = 4;
  k.max_cols = 4;
  return k;
}

const MatmulKernel* portable_kernel(GgmlType type) {
  static const MatmulKernel kF32 = scalar_kernel<GgmlType::F32>();
  static const MatmulKernel kF16 = scalar_kernel<GgmlType::F16>();
  static const MatmulKernel kBF16 = scalar_kernel<GgmlType::BF16>();
  static const MatmulKernel kQ4_0 = scalar_kernel<GgmlType::Q4_0>();
  static const MatmulKernel kIQ4_NL = scalar_kernel<GgmlType::IQ4_NL>();
  static const MatmulKernel kIQ4_XS = scalar_kernel<GgmlType::IQ4_XS>();
  static const MatmulKernel kQ4_1 = scalar_kernel<GgmlType::Q4_1>();
  static const MatmulKernel kQ5_0 = scalar_kernel<GgmlType::Q5_0>();
  static const MatmulKernel kQ5_1 = scalar_kernel<GgmlType::Q5_1>();
  static const MatmulKernel kQ8_0 = scalar_kernel<GgmlType::Q8_0>();
  static const MatmulKernel kQ2_K = scalar_kernel<GgmlType::Q2_K>();
  static const MatmulKernel kQ3_K = scalar_kernel<GgmlType::Q3_K>();
  static const MatmulKernel kQ4_K = scalar_kernel<GgmlType::Q4_K>();
  static const MatmulKernel kQ5_K = scalar_kernel<GgmlType::Q5_K>();
  static const MatmulKernel kQ6_K = scalar_kernel<GgmlType::Q6_K>();
  switch (type) {
    case GgmlType::F32: return &kF32;
    case GgmlType::F16: return &kF16;
    case GgmlType::BF16: return &kBF16;
    case GgmlType::Q4_0: return &kQ4_0;
    case GgmlType::IQ4_NL: return &kIQ4_NL;
    case GgmlType::IQ4_XS: return &kIQ4_XS;
    case GgmlType::Q4_1: return &kQ4_1;
    case GgmlType::Q5_0: return &kQ5_0;
    case GgmlType::Q5_1: return &kQ5_1;
    case GgmlType::Q8_0: return &kQ8_0;
    case GgmlType::Q2_K: return &kQ2_K;
    case GgmlType::Q3_K: return &kQ3_K;
    case GgmlType::Q4_K: return &kQ4_K;
    case GgmlType::Q5_K: return &kQ5_K;
    case GgmlType::Q6_K: return &kQ6_K;
    default: return nullptr;
  }
}

[[noreturn]] void throw_unsupported(GgmlType type, const char* what) {
  throw Exception(errc::unsupported,
                  std::string(what) + ": tensor type " + std::string(ggml_type_name(type)) + " is not supported");
}

}  // namespace

GgmlType activation_type_of(GgmlType type) {
  switch (type) {
    case GgmlType::F32:
    case GgmlType::F16:
    case GgmlType::BF16: return type;
    case GgmlType::Q4_0:
    case GgmlType::Q5_0:
    case GgmlType::Q8_0:
    case GgmlType::IQ4_NL: return GgmlType::Q8_0;
    case GgmlType::Q4_1:
    case GgmlType::Q5_1: return GgmlType::Q8_1;
    default: return GgmlType::Q8_K;
  }
}

void prepare_ggml_activation(GgmlType type, const float* x, uint8_t* dst, int64_t n) {
  switch (activation_type_of(type)) {
    case GgmlType::F32: std::memcpy(dst, x, static_cast<size_t>(n) * sizeof(float)); return;
    case GgmlType::F16: round_row_f16(x, reinterpret_cast<uint16_t*>(dst), n); return;
    case GgmlType::BF16: round_row_bf16(x, reinterpret_cast<uint16_t*>(dst), n); return;
    case GgmlType::Q8_0: quantize_row_q8_0(x, reinterpret_cast<BlockQ8_0*>(dst), n); return;
    case GgmlType::Q8_1: quantize_row_q8_1(x, reinterpret_cast<BlockQ8_1*>(dst), n); return;
    default: quantize_row_q8_k(x, reinterpret_cast<BlockQ8_K*>(dst), n); return;
  }
}

namespace {

bool cpu_has_v3_kernels() {
#if ILRE_AVX2_KERNELS
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c") &&
         __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2");
#else
  return false;
#endif
}

}  // namespace

KernelIsa kernel_isa() {
  static const KernelIsa isa = [] {
    KernelIsa best = KernelIsa::scalar;
    if (cpu_has_v3_kernels()) {
      best = KernelIsa::avx2;
      if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni")) {
        best = KernelIsa::avx512_vnni;
      }
    }
    const char* env = std::getenv("ILRE_KERNELS");
    const std::string_view want = env ? env : "";
    if (want == "scalar") return KernelIsa::scalar;
    if (want == "avx2" && best != KernelIsa::scalar) return KernelIsa::avx2;
    return best;
  }();
  return isa;
}

const char* kernel_isa_name(KernelIsa isa) {
  switch (isa) {
    case KernelIsa::avx512_vnni: return "avx512_vnni";
    case KernelIsa::avx2: return "avx2";
    default: return "scalar";
  }
}

const char* build_baseline() {
#ifdef ILRE_BUILD_BASELINE
  return ILRE_BUILD_BASELINE;
#else
  return "unknown";
#endif
}

bool avx2_kernels() {
  static const bool on = kernel_isa() != KernelIsa::scalar;
  return on;
}

const MatmulKernel& matmul_kernel(GgmlType type) {
#if ILRE_AVX2_KERNELS
  if (avx2_kernels()) {
    if (const MatmulKernel* k = avx2::matmul_kernel(type, kernel_isa())) return *k;
  }
#endif
  if (const MatmulKernel* k = portable_kernel(type)) return *k;
  throw_unsupported(type, "matrix product");
}

const MatmulKernel& matmul_kernel(GgmlType type, int64_t n, int64_t n_tok) {
  const int lanes = ggml_cpu().float_lanes;
  const bool portable = kernel_isa() == KernelIsa::scalar;
  if (const MatmulKernel* k = float_order_kernel(type, float_order(n, n_tok, lanes), lanes, portable)) return *k;
  return matmul_kernel(type);
}

float dot_row(GgmlType type, int64_t n, int64_t n_tok, const uint8_t* w, const uint8_t* a) {
  const MatmulKernel& k = matmul_kernel(type, n, n_tok);
  if (k.dot_ggml) return k.dot_ggml(n, w, a);
  // The activation goes through the kernel's own layout so that vec_dot() and matmul() agree exactly.
  thread_local std::vector<uint8_t> buffer;
  const size_t bytes = k.act_bytes(n) + kRowAlign;
  if (buffer.size() < bytes) buffer.resize(bytes);
  auto* aligned = reinterpret_cast<uint8_t*>(round_up(reinterpret_cast<uintptr_t>(buffer.data()), kRowAlign));
  k.import_ggml(a, aligned, n);
  float out = 0.0f;
  k.tile(n, w, 0, 1, aligned, 0, 1, &out, 1);
  return out;
}

}  // namespace ilre::model::kernels
