#include "model/kernels/quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "ilre/error.h"
#include "model/kernels/quant_internal.h"
#include "model/kernels/quant_kernels.h"

// ggml's dequantisers compute d*q - m with two roundings; a fused multiply-add would differ in the last bit.
#pragma GCC optimize("fp-contract=off")

namespace ilre::model {

using namespace quant;

// ---------------------------------------------------------------------------------------------------------
// Scalar conversions

float quant::fp16_to_fp32_portable(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    // Inf stays inf; a NaN keeps its payload and comes back quiet, as with F16C.
    bits = sign | 0x7f800000u | ((mant | (mant != 0 ? 0x200u : 0u)) << 13);
  } else if (exp != 0) {
    bits = sign | ((exp + 112u) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {
    // Subnormal half: normalise the mantissa into a float exponent.
    int e = -1;
    do {
      ++e;
      mant <<= 1;
    } while ((mant & 0x400u) == 0);
    bits = sign | ((112u - static_cast<uint32_t>(e)) << 23) | ((mant & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

uint16_t quant::fp32_to_fp16_portable(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  uint32_t abs = bits & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00u | static_cast<uint16_t>((abs >> 13) & 0x3ffu);  // quiet NaN
  if (abs >= 0x477ff000u) return sign | 0x7c00u;  // rounds to (or is) infinity
  if (abs < 0x38800000u) {
    // Result is subnormal or zero: adding 0.5 lines the float's ulp up with the half's (2^-24), so the
    // FPU performs the round-to-nearest-even for us.
    float v;
    std::memcpy(&v, &abs, sizeof v);
    v += 0.5f;
    uint32_t r;
    std::memcpy(&r, &v, sizeof r);
    return sign | static_cast<uint16_t>(r - 0x3f000000u);
  }
  const uint32_t odd = (abs >> 13) & 1u;
  abs += 0xc8000fffu + odd;  // rebias the exponent and round to nearest even in one add
  return sign | static_cast<uint16_t>(abs >> 13);
}

float fp16_to_fp32(uint16_t h) { return half_to_float(h); }
uint16_t fp32_to_fp16(float f) { return float_to_half(f); }

#if ILRE_AVX2_KERNELS
ILRE_AVX2_BEGIN
namespace {

// The F16C bodies of the two row conversions below; they return how many elements they converted.
int64_t fp16_to_fp32_row_f16c(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  }
  return i;
}

int64_t round_through_fp16_row_f16c(const float* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT);
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
  }
  return i;
}

}  // namespace
ILRE_AVX2_END
#endif

void fp16_to_fp32_row(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
#if ILRE_AVX2_KERNELS
  if (kernels::avx2_kernels()) i = fp16_to_fp32_row_f16c(src, dst, n);
#endif
  for (; i < n; ++i) dst[i] = half_to_float(src[i]);
}

void fp32_to_fp16_row(const float* src, uint16_t* dst, int64_t n) { kernels::round_row_f16(src, dst, n); }

void round_through_fp16_row(const float* src, float* dst, int64_t n) {
  int64_t i = 0;
#if ILRE_AVX2_KERNELS
  if (kernels::avx2_kernels()) i = round_through_fp16_row_f16c(src, dst, n);
#endif
  for (; i < n; ++i) dst[i] = half_to_float(float_to_half(src[i]));
}
float bf16_to_fp32(uint16_t h) { return bf16_bits_to_float(h); }
uint16_t fp32_to_bf16(float f) { return float_to_bf16_bits(f); }

namespace {

[[noreturn]] void throw_unsupported(GgmlType type, const char* what) {
  throw Exception(errc::unsupported,
                  std::string(what) + ": tensor type " + std::string(ggml_type_name(type)) + " is not supported");
}

void check_blocks(GgmlType type, int64_t n, const char* what) {
  const GgmlTypeInfo& info = ggml_type_info(type);
  if (!info.computable) throw_unsupported(type, what);
  if (n < 0 || n % info.block_size != 0) {
    throw Exception(errc::invalid_argument, std::string(what) + ": " + std::to_string(n) +
                                                " elements is not a whole number of " +
                                                std::string(info.name) + " blocks");
  }
}

// ---------------------------------------------------------------------------------------------------------
// Dequantisation of the legacy 32-element formats

void dequant_q4_0(const BlockQ4_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = half_to_float(b[i].d);
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = static_cast<float>((b[i].qs[j] & 0xF) - 8) * d;
      y[j + kQK / 2] = static_cast<float>((b[i].qs[j] >> 4) - 8) * d;
    }
  }
}

void dequant_iq4_nl(const BlockIQ4_NL* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = half_to_float(b[i].d);
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = d * static_cast<float>(kIq4Values[b[i].qs[j] & 0xF]);
      y[j + kQK / 2] = d * static_cast<float>(kIq4Values[b[i].qs[j] >> 4]);
    }
  }
}

void dequant_iq4_xs(const BlockIQ4_XS* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = half_to_float(b[i].d);
    for (int ib = 0; ib < kQKK / kQK; ++ib, y += kQK) {
      const float dl = d * static_cast<float>(iq4_xs_scale(b[i], ib));
      const uint8_t* qs = b[i].qs + ib * (kQK / 2);
      for (int j = 0; j < kQK / 2; ++j) {
        y[j] = dl * static_cast<float>(kIq4Values[qs[j] & 0xF]);
        y[j + kQK / 2] = dl * static_cast<float>(kIq4Values[qs[j] >> 4]);
      }
    }
  }
}

void dequant_q4_1(const BlockQ4_1* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = half_to_float(b[i].d);
    const float m = half_to_float(b[i].m);
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = static_cast<float>(b[i].qs[j] & 0xF) * d + m;
      y[j + kQK / 2] = static_cast<float>(b[i].qs[j] >> 4) * d + m;
    }
  }
}

// Five-bit value j (0..31) of a Q5 block before any offset.
inline int q5_value(const uint8_t* qs, uint32_t qh, int j) {
  const int nib = j < kQK / 2 ? (qs[j] & 0xF) : (qs[j - kQK / 2] >> 4);
  return nib | static_cast<int>(((qh >> j) & 1u) << 4);
}

void dequant_q5_0(const BlockQ5_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = half_to_float(b[i].d);
    const uint32_t qh = load_u32(b[i].qh);
    for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(q5_value(b[i].qs, qh, j) - 16) * d;
  }
}

void dequant_q5_1(const BlockQ5_1* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = half_to_float(b[i].d);
    const float m = half_to_float(b[i].m);
    const uint32_t qh = load_u32(b[i].qh);
    for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(q5_value(b[i].qs, qh, j)) * d + m;
  }
}

void dequant_q8_0(const BlockQ8_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = half_to_float(b[i].d);
    for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(b[i].qs[j]) * d;
  }
}

void dequant_q8_1(const BlockQ8_1* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = half_to_float(b[i].d);
    for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(b[i].qs[j]) * d;
  }
}

void dequant_q8_k(const BlockQ8_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQKK) {
    for (int j = 0; j < kQKK; ++j) y[j] = b[i].d * static_cast<float>(b[i].qs[j]);
  }
}

// K-quants: every super-block is unpacked into the common form value = (d*scale[g])*q - dmin*min[g] with
// g = element/16, which is the expression ggml's dequantisers evaluate (so results are bit-identical).
template <class Block>
void dequant_k(const Block* b, float* y, int64_t nb) {
  UnpackedK u;
  for (int64_t i = 0; i < nb; ++i, y += kQKK) {
    unpack_k(b[i], u);
    for (int g = 0; g < kQKK / 16; ++g) {
      const float dl = u.d * static_cast<float>(u.scale[g]);
      const float ml = u.dmin * static_cast<float>(u.min[g]);
      for (int l = 0; l < 16; ++l) y[16 * g + l] = dl * static_cast<float>(u.q[16 * g + l]) - ml;
    }
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// K-quant super-block unpacking (shared with the dot kernels)

void quant::unpack_k(const BlockQ2_K& b, UnpackedK& u) {
  u.d = half_to_float(b.d);
  u.dmin = half_to_float(b.dmin);
  for (int g = 0; g < 16; ++g) {
    u.scale[g] = static_cast<int16_t>(b.scales[g] & 0xF);
    u.min[g] = static_cast<int16_t>(b.scales[g] >> 4);
  }
  for (int e = 0; e < kQKK; ++e) {
    const int byte = (e / 128) * 32 + e % 32;
    const int shift = 2 * ((e % 128) / 32);
    u.q[e] = static_cast<int8_t>((b.qs[byte] >> shift) & 3);
  }
}

void quant::unpack_k(const BlockQ3_K& b, UnpackedK& u) {
  u.d = half_to_float(b.d);
  u.dmin = 0.0f;
  for (int g = 0; g < 16; ++g) {
    u.scale[g] = static_cast<int16_t>(q3k_scale(g, b.scales));
    u.min[g] = 0;
  }
  for (int e = 0; e < kQKK; ++e) {
    const int l = e % 32;
    const int byte = (e / 128) * 32 + l;
    const int shift = 2 * ((e % 128) / 32);
    const bool high = (b.hmask[l] >> (e / 32)) & 1;
    u.q[e] = static_cast<int8_t>(((b.qs[byte] >> shift) & 3) - (high ? 0 : 4));
  }
}

namespace {

// Q4_K and Q5_K share their super-block scales: 8 packed 6-bit (scale, min) pairs, each for 32 values.
void unpack_k4_scales(uint16_t d, uint16_t dmin, const uint8_t* scales, UnpackedK& u) {
  u.d = half_to_float(d);
  u.dmin = half_to_float(dmin);
  for (int j = 0; j < 8; ++j) {
    int sc, m;
    k4_scale_min(j, scales, sc, m);
    u.scale[2 * j] = u.scale[2 * j + 1] = static_cast<int16_t>(sc);
    u.min[2 * j] = u.min[2 * j + 1] = static_cast<int16_t>(m);
  }
}

}  // namespace

void quant::unpack_k(const BlockQ4_K& b, UnpackedK& u) {
  unpack_k4_scales(b.d, b.dmin, b.scales, u);
  for (int e = 0; e < kQKK; ++e) {
    const uint8_t byte = b.qs[(e / 64) * 32 + e % 32];
    u.q[e] = static_cast<int8_t>((e % 64) < 32 ? (byte & 0xF) : (byte >> 4));
  }
}

void quant::unpack_k(const BlockQ5_K& b, UnpackedK& u) {
  unpack_k4_scales(b.d, b.dmin, b.scales, u);
  for (int e = 0; e < kQKK; ++e) {
    const uint8_t byte = b.qs[(e / 64) * 32 + e % 32];
    const int low = (e % 64) < 32 ? (byte & 0xF) : (byte >> 4);
    const int high = (b.qh[e % 32] >> (e / 32)) & 1;
    u.q[e] = static_cast<int8_t>(low | (high << 4));
  }
}

void quant::unpack_k(const BlockQ6_K& b, UnpackedK& u) {
  u.d = half_to_float(b.d);
  u.dmin = 0.0f;
  for (int g = 0; g < 16; ++g) {
    u.scale[g] = b.scales[g];
    u.min[g] = 0;
  }
  for (int e = 0; e < kQKK; ++e) {
    const int half = e / 128;  // which 128-element half: ql advances 64 bytes, qh 32 bytes per half
    const int r = e % 128;
    const int l = r % 32;
    const int quarter = r / 32;  // 0..3 pick low/high nibble of ql[l] / ql[l+32] and a 2-bit field of qh
    const uint8_t lbyte = b.ql[half * 64 + l + (quarter & 1) * 32];
    const int low = quarter < 2 ? (lbyte & 0xF) : (lbyte >> 4);
    const int high = (b.qh[half * 32 + l] >> (2 * quarter)) & 3;
    u.q[e] = static_cast<int8_t>((low | (high << 4)) - 32);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Public API

GgmlType activation_type(GgmlType weight_type) {
  switch (weight_type) {
    case GgmlType::F32:
    case GgmlType::F16:
    case GgmlType::BF16:
      return weight_type;
    case GgmlType::Q4_0:
    case GgmlType::Q5_0:
    case GgmlType::Q8_0:
    case GgmlType::IQ4_NL:
      return GgmlType::Q8_0;
    case GgmlType::Q4_1:
    case GgmlType::Q5_1:
      return GgmlType::Q8_1;
    case GgmlType::Q2_K:
    case GgmlType::Q3_K:
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
    case GgmlType::Q6_K:
    case GgmlType::IQ4_XS:
      return GgmlType::Q8_K;
    default:
      throw_unsupported(weight_type, "matrix product");
  }
}

size_t activation_row_bytes(GgmlType weight_type, int64_t n) {
  check_blocks(weight_type, n, "activation row");
  const GgmlType at = activation_type(weight_type);
  const int64_t block = ggml_type_info(at).block_size;
  if (n % block != 0) {
    throw Exception(errc::invalid_argument, "activation row: " + std::to_string(n) +
                                                " elements do not fill whole activation blocks");
  }
  // Sized from our block structs: ggml's current block_q8_1 is 36 bytes (two fp16 + 32 quants), while
  // older tables (and gguf-py's GGML_QUANT_SIZES) still list the 40-byte float version.
  switch (at) {
    case GgmlType::Q8_0: return static_cast<size_t>(n / block) * sizeof(BlockQ8_0);
    case GgmlType::Q8_1: return static_cast<size_t>(n / block) * sizeof(BlockQ8_1);
    case GgmlType::Q8_K: return static_cast<size_t>(n / block) * sizeof(BlockQ8_K);
    default: return *ggml_row_bytes(at, n);
  }
}

void quantize_activation_row(GgmlType weight_type, const float* src, void* dst, int64_t n) {
  const GgmlType at = activation_type(weight_type);
  check_blocks(weight_type, n, "quantize activation");
  if (n % ggml_type_info(at).block_size != 0) {
    throw Exception(errc::invalid_argument, "quantize activation: row length not a multiple of the block");
  }
  switch (at) {
    case GgmlType::F32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case GgmlType::F16:
      kernels::round_row_f16(src, static_cast<uint16_t*>(dst), n);
      return;
    case GgmlType::BF16:
      kernels::round_row_bf16(src, static_cast<uint16_t*>(dst), n);
      return;
    case GgmlType::Q8_0:
      kernels::quantize_row_q8_0(src, static_cast<BlockQ8_0*>(dst), n);
      return;
    case GgmlType::Q8_1:
      kernels::quantize_row_q8_1(src, static_cast<BlockQ8_1*>(dst), n);
      return;
    case GgmlType::Q8_K:
      kernels::quantize_row_q8_k(src, static_cast<BlockQ8_K*>(dst), n);
      return;
    default:
      throw_unsupported(weight_type, "quantize activation");
  }
}

float vec_dot(GgmlType weight_type, int64_t n, const void* weight_row, const void* activation_row) {
  return matmul_dot(weight_type, n, 1, weight_row, activation_row);
}

float matmul_dot(GgmlType weight_type, int64_t n, int64_t n_tok, const void* weight_row, const void* activation_row) {
  check_blocks(weight_type, n, "vec_dot");
  return kernels::dot_row(weight_type, n, n_tok, static_cast<const uint8_t*>(weight_row),
                          static_cast<const uint8_t*>(activation_row));
}

void dequantize_row(GgmlType type, const void* src, float* dst, int64_t n) {
  if (type == GgmlType::Q8_1 || type == GgmlType::Q8_K) {
    // Activation formats: not weight types, but tests and tools dequantise them.
    const int64_t bs = ggml_type_info(type).block_size;
    if (n % bs != 0) throw Exception(errc::invalid_argument, "dequantize: partial block");
    if (type == GgmlType::Q8_1) dequant_q8_1(static_cast<const BlockQ8_1*>(src), dst, n / bs);
    else dequant_q8_k(static_cast<const BlockQ8_K*>(src), dst, n / bs);
    return;
  }
  check_blocks(type, n, "dequantize");
  const int64_t nb = n / ggml_type_info(type).block_size;
  switch (type) {
    case GgmlType::F32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case GgmlType::F16:
      fp16_to_fp32_row(static_cast<const uint16_t*>(src), dst, n);
      return;
    case GgmlType::BF16: {
      const auto* h = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_bits_to_float(h[i]);
      return;
    }
    case GgmlType::Q4_0: return dequant_q4_0(static_cast<const BlockQ4_0*>(src), dst, nb);
    case GgmlType::Q4_1: return dequant_q4_1(static_cast<const BlockQ4_1*>(src), dst, nb);
    case GgmlType::Q5_0: return dequant_q5_0(static_cast<const BlockQ5_0*>(src), dst, nb);
    case GgmlType::Q5_1: return dequant_q5_1(static_cast<const BlockQ5_1*>(src), dst, nb);
    case GgmlType::Q8_0: return dequant_q8_0(static_cast<const BlockQ8_0*>(src), dst, nb);
    case GgmlType::Q2_K: return dequant_k(static_cast<const BlockQ2_K*>(src), dst, nb);
    case GgmlType::Q3_K: return dequant_k(static_cast<const BlockQ3_K*>(src), dst, nb);
    case GgmlType::Q4_K: return dequant_k(static_cast<const BlockQ4_K*>(src), dst, nb);
    case GgmlType::Q5_K: return dequant_k(static_cast<const BlockQ5_K*>(src), dst, nb);
    case GgmlType::Q6_K: return dequant_k(static_cast<const BlockQ6_K*>(src), dst, nb);
    case GgmlType::IQ4_NL: return dequant_iq4_nl(static_cast<const BlockIQ4_NL*>(src), dst, nb);
    case GgmlType::IQ4_XS: return dequant_iq4_xs(static_cast<const BlockIQ4_XS*>(src), dst, nb);
    default:
      throw_unsupported(type, "dequantize");
  }
}

}  // namespace ilre::model
