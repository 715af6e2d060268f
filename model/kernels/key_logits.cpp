#include "model/kernels/key_logits.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "model/kernels/isa.h"
#include "model/kernels/quant.h"

namespace ilre::model::kernels {
namespace {

float key_value(uint16_t bits, Key16 type) {
  if (type == Key16::f16) return fp16_to_fp32(bits);
  return bf16_to_fp32(bits);
}

}  // namespace

void key_logits_16_scalar(const uint16_t* keys, int64_t n, Key16 type, int64_t j0, int64_t t, int64_t d,
                          const float* q, int64_t cols, float* logits, int64_t ld) {
  for (int64_t c = 0; c < cols; ++c) {
    for (int64_t j = 0; j < t; ++j) {
      float acc = 0.0f;
      for (int64_t p = 0; p < d; ++p) acc = std::fma(q[c * d + p], key_value(keys[p * n + j0 + j], type), acc);
      logits[c * ld + j] = acc;
    }
  }
}

#if ILRE_AVX2_KERNELS
ILRE_AVX2_BEGIN
namespace {

// Tokens per packed panel: [d, kPanel] F32 (64 KiB at d = 256) stays in L2 while every column block reads it.
constexpr int64_t kPanel = 64;
// Register block: 16 tokens (two vectors) x kCols query rows = 12 accumulators, 2 key loads and kCols
// broadcasts per step of p.
constexpr int64_t kCols = 6;

// Converts keys [p][j0 + j] for j < m into panel [p][0..kPanel), zero past m.
void pack_panel(const uint16_t* keys, int64_t n, Key16 type, int64_t j0, int64_t m, int64_t d, float* panel) {
  for (int64_t p = 0; p < d; ++p) {
    const uint16_t* src = keys + p * n + j0;
    float* dst = panel + p * kPanel;
    int64_t j = 0;
    if (type == Key16::f16) {
      for (; j + 8 <= m; j += 8) {
        _mm256_storeu_ps(dst + j, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + j))));
      }
    } else {
      for (; j + 8 <= m; j += 8) {
        const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + j)));
        _mm256_storeu_ps(dst + j, _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16)));
      }
    }
    for (; j < m; ++j) dst[j] = key_value(src[j], type);
    for (; j < kPanel; ++j) dst[j] = 0.0f;
  }
}

// 16 tokens of the panel (from column jb) x NC query rows.
template <int NC>
void micro(const float* panel, int64_t jb, int64_t d, const float* q, float* out, int64_t ld, int64_t valid) {
  __m256 acc0[NC], acc1[NC];
  for (int c = 0; c < NC; ++c) acc0[c] = acc1[c] = _mm256_setzero_ps();
  for (int64_t p = 0; p < d; ++p) {
    const __m256 k0 = _mm256_loadu_ps(panel + p * kPanel + jb);
    const __m256 k1 = _mm256_loadu_ps(panel + p * kPanel + jb + 8);
    for (int c = 0; c < NC; ++c) {
      const __m256 qv = _mm256_broadcast_ss(q + c * d + p);
      acc0[c] = _mm256_fmadd_ps(k0, qv, acc0[c]);
      acc1[c] = _mm256_fmadd_ps(k1, qv, acc1[c]);
    }
  }
  float tmp[16];
  for (int c = 0; c < NC; ++c) {
    float* dst = out + c * ld;
    if (valid == 16) {
      _mm256_storeu_ps(dst, acc0[c]);
      _mm256_storeu_ps(dst + 8, acc1[c]);
    } else {
      _mm256_storeu_ps(tmp, acc0[c]);
      _mm256_storeu_ps(tmp + 8, acc1[c]);
      std::memcpy(dst, tmp, static_cast<size_t>(valid) * sizeof(float));
    }
  }
}

void micro_any(int nc, const float* panel, int64_t jb, int64_t d, const float* q, float* out, int64_t ld, int64_t valid) {
  switch (nc) {
    case 1: return micro<1>(panel, jb, d, q, out, ld, valid);
    case 2: return micro<2>(panel, jb, d, q, out, ld, valid);
    case 3: return micro<3>(panel, jb, d, q, out, ld, valid);
    case 4: return micro<4>(panel, jb, d, q, out, ld, valid);
    case 5: return micro<5>(panel, jb, d, q, out, ld, valid);
    default: return micro<kCols>(panel, jb, d, q, out, ld, valid);
  }
}

void key_logits_16_avx2(const uint16_t* keys, int64_t n, Key16 type, int64_t j0, int64_t t, int64_t d,
                        const float* q, int64_t cols, float* logits, int64_t ld) {
  std::vector<float> panel_buf(static_cast<size_t>(d * kPanel));  // 64 KiB per call of 2,048 keys: noise
  float* panel = panel_buf.data();
  for (int64_t tb = 0; tb < t; tb += kPanel) {
    const int64_t m = std::min(kPanel, t - tb);
    pack_panel(keys, n, type, j0 + tb, m, d, panel);
    for (int64_t jb = 0; jb < m; jb += 16) {
      const int64_t valid = std::min<int64_t>(16, m - jb);
      for (int64_t cb = 0; cb < cols; cb += kCols) {
        const int nc = static_cast<int>(std::min(kCols, cols - cb));
        micro_any(nc, panel, jb, d, q + cb * d, logits + cb * ld + tb + jb, ld, valid);
      }
    }
  }
}

}  // namespace
ILRE_AVX2_END
#endif

void key_logits_16(const uint16_t* keys, int64_t n, Key16 type, int64_t j0, int64_t t, int64_t d, const float* q,
                   int64_t cols, float* logits, int64_t ld) {
#if ILRE_AVX2_KERNELS
  if (avx2_kernels()) return key_logits_16_avx2(keys, n, type, j0, t, d, q, cols, logits, ld);
#endif
  key_logits_16_scalar(keys, n, type, j0, t, d, q, cols, logits, ld);
}

}  // namespace ilre::model::kernels
