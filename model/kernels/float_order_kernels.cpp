// F32 and F16 weight products summed in llama.cpp's order (see ggml_cpu.h).
//
// Two orders, each for a vector width of 8 or 16 lanes (ggml's AVX/AVX2 or AVX-512 build):
//   tiny: llamafile's tinyBLAS, which llama.cpp uses for a product of two or more activation rows when the
//         row length is a multiple of the width: one accumulator of `lanes` floats per output, one FMA per
//         block of `lanes` elements, then a horizontal sum.
//   vec:  ggml_vec_dot_f32/f16, for everything else (decode, odd lengths): four accumulators over steps of
//         4 x lanes elements, folded pairwise, summed horizontally, and the elements after the last whole
//         step added one by one (in double for F16, in float for F32).
// The horizontal sums are trees fixed by the instructions ggml uses: the 8-lane tinyBLAS sum and the
// 16-lane _mm512_reduce_add_ps both come to ggml_hsum; ggml's 8-lane vec_dot folds with two hadds.
// The AVX2 forms run 16-lane orders on pairs of 8-lane registers with the same per-lane operations, so
// they agree bit for bit with the portable forms, which spell every operation out with std::fma.
#include <array>
#include <cmath>
#include <cstring>
#include <utility>

#include "model/kernels/isa.h"
#include "model/kernels/quant.h"
#include "model/kernels/quant_internal.h"
#include "model/kernels/quant_kernels.h"

namespace ilre::model::kernels {
namespace {

using quant::half_to_float;

constexpr size_t kAlign = 64;

size_t f32_act_bytes(int64_t n) { return (static_cast<size_t>(n) * sizeof(float) + kAlign - 1) / kAlign * kAlign; }

// Prepared activations are f32 holding ggml's activation values: F16-rounded for F16 weights.
void prepare_for_f32(const float* x, uint8_t* dst, int64_t n) {
  std::memcpy(dst, x, static_cast<size_t>(n) * sizeof(float));
}
void prepare_for_f16(const float* x, uint8_t* dst, int64_t n) {
  round_through_fp16_row(x, reinterpret_cast<float*>(dst), n);
}
void import_f32_act(const uint8_t* src, uint8_t* dst, int64_t n) {
  std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
}
void import_f16_act(const uint8_t* src, uint8_t* dst, int64_t n) {
  fp16_to_fp32_row(reinterpret_cast<const uint16_t*>(src), reinterpret_cast<float*>(dst), n);
}

// kDoubleTail: ggml_vec_dot_f16 adds the elements after the last whole step in double, ggml_vec_dot_f32 in
// float.
struct WF32 {
  static constexpr bool kDoubleTail = false;
  static float at(const uint8_t* row, int64_t i) {
    float v;
    std::memcpy(&v, row + 4 * i, sizeof v);
    return v;
  }
};
struct WF16 {
  static constexpr bool kDoubleTail = true;
  static float at(const uint8_t* row, int64_t i) {
    uint16_t h;
    std::memcpy(&h, row + 2 * i, sizeof h);
    return half_to_float(h);
  }
};

// ---------------------------------------------------------------------------------------------------------
// Portable forms.

template <class W>
float add_tail(float head, int64_t np, int64_t n, const uint8_t* w, const float* a) {
  if constexpr (W::kDoubleTail) {
    double sum = head;
    for (int64_t i = np; i < n; ++i) sum += static_cast<double>(W::at(w, i) * a[i]);
    return static_cast<float>(sum);
  } else {
    float sum = head;
    for (int64_t i = np; i < n; ++i) sum += W::at(w, i) * a[i];
    return sum;
  }
}

template <class W, int kLanes>
float portable_tiny(int64_t n, const uint8_t* w, const float* a) {
  float acc[16] = {};
  for (int64_t i = 0; i < n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) acc[l] = std::fma(W::at(w, i + l), a[i + l], acc[l]);
  }
  return ggml_hsum(acc, kLanes);
}

template <class W, int kLanes>
float portable_vec(int64_t n, const uint8_t* w, const float* a) {
  constexpr int64_t kStep = 4 * kLanes;
  float s[4][16] = {};
  const int64_t np = n / kStep * kStep;
  for (int64_t i = 0; i < np; i += kStep) {
    for (int j = 0; j < 4; ++j) {
      for (int l = 0; l < kLanes; ++l) {
        const int64_t e = i + j * kLanes + l;
        s[j][l] = std::fma(W::at(w, e), a[e], s[j][l]);
      }
    }
  }
  return add_tail<W>(ggml_fold_vec_dot(s, kLanes), np, n, w, a);
}

// ---------------------------------------------------------------------------------------------------------
// AVX2 forms.

#if ILRE_AVX2_KERNELS
ILRE_AVX2_BEGIN

struct VF32 {
  static __m256 load8(const uint8_t* row, int64_t i) { return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + i); }
};
struct VF16 {
  static __m256 load8(const uint8_t* row, int64_t i) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * i)));
  }
};

inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float hadd8(__m256 v) {
  const __m128 t = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 h = _mm_hadd_ps(t, t);
  return _mm_cvtss_f32(_mm_hadd_ps(h, h));
}

// R weight rows x C activation rows; kV = lanes / 8 registers per accumulator.
template <class V, int kV, int R, int C>
void avx2_tiny_tile(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, int64_t ldy) {
  __m256 acc[R][C][kV];
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) {
      for (int v = 0; v < kV; ++v) acc[r][c][v] = _mm256_setzero_ps();
    }
  }
  for (int64_t i = 0; i < n; i += 8 * kV) {
    for (int v = 0; v < kV; ++v) {
      __m256 xv[C];
      for (int c = 0; c < C; ++c) xv[c] = _mm256_loadu_ps(reinterpret_cast<const float*>(a + c * as) + i + 8 * v);
      for (int r = 0; r < R; ++r) {
        const __m256 wv = V::load8(w + r * ws, i + 8 * v);
        for (int c = 0; c < C; ++c) acc[r][c][v] = _mm256_fmadd_ps(wv, xv[c], acc[r][c][v]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) {
      const __m256 f = kV == 2 ? _mm256_add_ps(acc[r][c][0], acc[r][c][kV - 1]) : acc[r][c][0];
      y[c * ldy + r] = hsum8(f);
    }
  }
}

template <class V, class W, int kV>
float avx2_vec(int64_t n, const uint8_t* w, const float* a) {
  constexpr int64_t kLanes = 8 * kV;
  constexpr int64_t kStep = 4 * kLanes;
  __m256 s[4][kV];
  for (auto& j : s) {
    for (auto& v : j) v = _mm256_setzero_ps();
  }
  const int64_t np = n / kStep * kStep;
  const auto* wb = w;
  for (int64_t i = 0; i < np; i += kStep) {
    for (int j = 0; j < 4; ++j) {
      for (int v = 0; v < kV; ++v) {
        const int64_t e = i + j * kLanes + 8 * v;
        s[j][v] = _mm256_fmadd_ps(V::load8(wb, e), _mm256_loadu_ps(a + e), s[j][v]);
      }
    }
  }
  for (int v = 0; v < kV; ++v) {
    s[0][v] = _mm256_add_ps(s[0][v], s[2][v]);
    s[1][v] = _mm256_add_ps(s[1][v], s[3][v]);
    s[0][v] = _mm256_add_ps(s[0][v], s[1][v]);
  }
  const float head = kV == 2 ? hsum8(_mm256_add_ps(s[0][0], s[0][kV - 1])) : hadd8(s[0][0]);
  return add_tail<W>(head, np, n, w, a);
}

ILRE_AVX2_END
#endif

// ---------------------------------------------------------------------------------------------------------
// Kernels.

using DotFn = float (*)(int64_t, const uint8_t*, const float*);

template <DotFn kDot>
void dot_tile(int64_t n, const uint8_t* w, size_t ws, int nr, const uint8_t* a, size_t as, int nc, float* y,
              int64_t ldy) {
  for (int c = 0; c < nc; ++c) {
    const auto* ac = reinterpret_cast<const float*>(a + c * as);
    for (int r = 0; r < nr; ++r) y[c * ldy + r] = kDot(n, w + r * ws, ac);
  }
}

template <DotFn kDot>
float dot_ggml_f32(int64_t n, const uint8_t* w, const uint8_t* ggml_act) {
  return kDot(n, w, reinterpret_cast<const float*>(ggml_act));
}

MatmulKernel base_kernel(GgmlType type) {
  MatmulKernel k;
  k.act_bytes = f32_act_bytes;
  k.prepare = type == GgmlType::F16 ? prepare_for_f16 : prepare_for_f32;
  k.import_ggml = type == GgmlType::F16 ? import_f16_act : import_f32_act;
  return k;
}

template <DotFn kDot>
MatmulKernel dot_kernel(GgmlType type) {
  MatmulKernel k = base_kernel(type);
  k.tile = dot_tile<kDot>;
  k.max_rows = 4;
  k.max_cols = 4;
  // vec_dot reads F32 activations directly; F16 ones go through import (exact) like every other format.
  if (type == GgmlType::F32) k.dot_ggml = dot_ggml_f32<kDot>;
  return k;
}

#if ILRE_AVX2_KERNELS
ILRE_AVX2_BEGIN
template <class V, int kV, int R, int C>
struct TinyTable {
  using Fn = void (*)(int64_t, const uint8_t*, size_t, const uint8_t*, size_t, float*, int64_t);
  template <size_t... I>
  static constexpr std::array<Fn, R * C> make(std::index_sequence<I...>) {
    return {&avx2_tiny_tile<V, kV, static_cast<int>(I) / C + 1, static_cast<int>(I) % C + 1>...};
  }
  static constexpr std::array<Fn, R * C> kFns = make(std::make_index_sequence<R * C>{});
  static void tile(int64_t n, const uint8_t* w, size_t ws, int nr, const uint8_t* a, size_t as, int nc, float* y,
                   int64_t ldy) {
    kFns[static_cast<size_t>((nr - 1) * C + (nc - 1))](n, w, ws, a, as, y, ldy);
  }
};

// R x C x kV accumulators plus the loads must fit the register file: 16 ymm registers with AVX2 alone,
// 32 when the compiler may use AVX-512VL encodings.
#if defined(__AVX512VL__)
constexpr int kWideTinyRows = 4;
#else
constexpr int kWideTinyRows = 2;
#endif

template <class V, int kV>
MatmulKernel avx2_tiny_kernel(GgmlType type) {
  constexpr int R = kV == 2 ? kWideTinyRows : 4;
  constexpr int C = 3;
  MatmulKernel k = base_kernel(type);
  k.tile = &TinyTable<V, kV, R, C>::tile;
  k.max_rows = R;
  k.max_cols = C;
  return k;
}
ILRE_AVX2_END
#endif

struct KernelSet {
  MatmulKernel tiny8, tiny16, vec8, vec16;
};

template <class W>
KernelSet portable_set(GgmlType type) {
  KernelSet s;
  s.tiny8 = dot_kernel<portable_tiny<W, 8>>(type);
  s.tiny16 = dot_kernel<portable_tiny<W, 16>>(type);
  s.vec8 = dot_kernel<portable_vec<W, 8>>(type);
  s.vec16 = dot_kernel<portable_vec<W, 16>>(type);
  return s;
}

#if ILRE_AVX2_KERNELS
ILRE_AVX2_BEGIN
template <class V, class W>
KernelSet avx2_set(GgmlType type) {
  KernelSet s;
  s.tiny8 = avx2_tiny_kernel<V, 1>(type);
  s.tiny16 = avx2_tiny_kernel<V, 2>(type);
  s.vec8 = dot_kernel<avx2_vec<V, W, 1>>(type);
  s.vec16 = dot_kernel<avx2_vec<V, W, 2>>(type);
  return s;
}
ILRE_AVX2_END
#endif

const MatmulKernel& pick(const KernelSet& s, FloatOrder order, int lanes) {
  if (order == FloatOrder::tiny) return lanes == 16 ? s.tiny16 : s.tiny8;
  return lanes == 16 ? s.vec16 : s.vec8;
}

}  // namespace

float ggml_hsum(const float* v, int lanes) {
  float f[8];
  for (int l = 0; l < 8; ++l) f[l] = lanes == 16 ? v[l] + v[l + 8] : v[l];
  float t[4];
  for (int i = 0; i < 4; ++i) t[i] = f[i] + f[i + 4];
  return (t[0] + t[2]) + (t[1] + t[3]);
}

float ggml_fold_vec_dot(float (*s)[16], int lanes) {
  for (int l = 0; l < lanes; ++l) {
    s[0][l] += s[2][l];
    s[1][l] += s[3][l];
    s[0][l] += s[1][l];
  }
  if (lanes == 16) return ggml_hsum(s[0], 16);
  float t[4];
  for (int i = 0; i < 4; ++i) t[i] = s[0][i] + s[0][i + 4];
  return (t[0] + t[1]) + (t[2] + t[3]);
}

float ggml_vec_dot_f32(const float* x, const float* y, int64_t n, int lanes) {
#if ILRE_AVX2_KERNELS
  if (avx2_kernels()) {
    const auto* w = reinterpret_cast<const uint8_t*>(x);
    return lanes == 16 ? avx2_vec<VF32, WF32, 2>(n, w, y) : avx2_vec<VF32, WF32, 1>(n, w, y);
  }
#endif
  return lanes == 16 ? portable_vec<WF32, 16>(n, reinterpret_cast<const uint8_t*>(x), y)
                     : portable_vec<WF32, 8>(n, reinterpret_cast<const uint8_t*>(x), y);
}

FloatOrder float_order(int64_t n, int64_t n_tok, int lanes) {
  return n_tok >= 2 && n % lanes == 0 ? FloatOrder::tiny : FloatOrder::vec;
}

const MatmulKernel* float_order_kernel(GgmlType type, FloatOrder order, int lanes, bool portable) {
  if (type != GgmlType::F32 && type != GgmlType::F16) return nullptr;
  if (lanes != 8 && lanes != 16) return nullptr;
  static const KernelSet kPortableF32 = portable_set<WF32>(GgmlType::F32);
  static const KernelSet kPortableF16 = portable_set<WF16>(GgmlType::F16);
#if ILRE_AVX2_KERNELS
  if (!portable && avx2_kernels()) {
    static const KernelSet kAvx2F32 = avx2_set<VF32, WF32>(GgmlType::F32);
    static const KernelSet kAvx2F16 = avx2_set<VF16, WF16>(GgmlType::F16);
    return &pick(type == GgmlType::F16 ? kAvx2F16 : kAvx2F32, order, lanes);
  }
#endif
  return &pick(type == GgmlType::F16 ? kPortableF16 : kPortableF32, order, lanes);
}

}  // namespace ilre::model::kernels
