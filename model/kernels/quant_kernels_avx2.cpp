// AVX2/FMA matrix-product tiles.
//
// A tile multiplies R weight rows with C activation rows. Inside a quantisation block everything is
// integer, as in ggml: _mm256_maddubs_epi16 multiplies unsigned weight bytes with signed activation
// bytes into int16 pair sums, _mm256_madd_epi16 widens (and, for the K-quants, applies the 16-element
// scales) into int32 lanes; each block's lanes are then converted once and accumulated with the block
// scale by FMA into one __m256 per (row, column). Every weight block is decoded once per tile and reused
// for C columns; every activation block is loaded once per row. The per-(row, column) sequence of
// floating-point operations does not depend on R or C, which is what makes results independent of the
// tiling and of the thread count.
//
// In a prefill the legacy formats are first packed (MatmulKernel::pack_rows): a chunk of weight rows is
// decoded once into plain bytes and f32 scales, so the costly Q4/Q5 bit unpacking is not repeated for
// every group of C columns. In a decode step (one column) the direct tiles read the GGUF blocks with
// software prefetch, because there the weights stream from DRAM.
//
// Prepared activation rows (the layouts behind MatmulKernel::prepare):
//   Q8_0: int8 qs[n] | f32 d[n/32]                     (d holds the fp16-rounded scale, as ggml stores it)
//   Q8_1: int8 qs[n] | f32 d[n/32] | f32 s[n/32]       (s = fp16(d * sum(qs)), as ggml)
//   Q8_K: int8 qs[n] | int16 bsums[n/16] | f32 d[n/256]  (bsums of a super-block in even/odd group order)
//   F32, F16, BF16 weights: f32 x[n], rounded through fp16 / bf16 for the latter two (exactly ggml's
//   rounding; converting back to f32 is exact, so the tile multiplies the same numbers as ggml).
// GCC 12 reports a false -Wuninitialized inside avx512fintrin.h's _mm512_inserti64x4 (its
// _mm512_undefined_epi32, GCC bug 105593) once inlined here; the pragma must precede the header.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include "model/kernels/quant_kernels.h"

#include "model/kernels/quant.h"

#if ILRE_AVX2_KERNELS
#if !defined(__AVX2__) || !defined(__FMA__) || !defined(__F16C__)
#error "quant_kernels_avx2.cpp needs ILRE_AVX2_FLAGS (model/CMakeLists.txt)"
#endif

#include <immintrin.h>

#include <array>
#include <cstring>
#include <type_traits>
#include <utility>

namespace ilre::model::kernels::avx2 {
namespace {

using namespace quant;

constexpr size_t kRowAlign = 64;
size_t round_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline float load_half(const uint8_t* p) { return half_to_float(load_u16(p)); }

inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

inline void prefetch(const void* p) { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0); }

// 32 nibbles -> 32 bytes: element j < 16 is the low nibble of byte j, element j + 16 its high nibble.
inline __m256i nibbles_32(const uint8_t* p) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(raw), _mm_srli_epi16(raw, 4), 1);
  return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

// Bit j of a 32-bit mask -> byte j = 0xFF if set, 0x00 otherwise.
inline __m256i bits_to_bytes(uint32_t bits) {
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(static_cast<int>(bits)),
      _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0x0000000000000000));
  const __m256i select = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ULL));
  return _mm256_cmpeq_epi8(_mm256_and_si256(spread, select), select);
}

// ---------------------------------------------------------------------------------------------------------
// Prepared activation rows

struct Q8Row {  // Q8_0 and Q8_1 layouts
  static size_t bytes(int64_t n, bool with_sums) {
    return round_up(static_cast<size_t>(n) + static_cast<size_t>(n / kQK) * sizeof(float) * (with_sums ? 2 : 1),
                    kRowAlign);
  }
  static const int8_t* qs(const uint8_t* row) { return reinterpret_cast<const int8_t*>(row); }
  static const float* d(const uint8_t* row, int64_t n) { return reinterpret_cast<const float*>(row + n); }
  static const float* s(const uint8_t* row, int64_t n) { return d(row, n) + n / kQK; }
};

struct Q8KRow {
  static size_t bytes(int64_t n) {
    return round_up(static_cast<size_t>(n) + static_cast<size_t>(n / 16) * sizeof(int16_t) +
                        static_cast<size_t>(n / kQKK) * sizeof(float),
                    kRowAlign);
  }
  static const int8_t* qs(const uint8_t* row) { return reinterpret_cast<const int8_t*>(row); }
  static const int16_t* bsums(const uint8_t* row, int64_t n) { return reinterpret_cast<const int16_t*>(row + n); }
  static const float* d(const uint8_t* row, int64_t n) {
    return reinterpret_cast<const float*>(row + n + (n / 16) * static_cast<int64_t>(sizeof(int16_t)));
  }
};

// The C activation rows a tile reads, split into their parts once per tile.
template <int C>
struct Q8Columns {
  const int8_t* qs[C];
  const float* d[C];
  const float* s[C];
  Q8Columns(const uint8_t* a, size_t as, int64_t n) {
    for (int c = 0; c < C; ++c) {
      qs[c] = Q8Row::qs(a + c * as);
      d[c] = Q8Row::d(a + c * as, n);
      s[c] = Q8Row::s(a + c * as, n);
    }
  }
};

template <int C>
struct Q8KColumns {
  const int8_t* qs[C];
  const int16_t* bsums[C];
  const float* d[C];
  Q8KColumns(const uint8_t* a, size_t as, int64_t n) {
    for (int c = 0; c < C; ++c) {
      qs[c] = Q8KRow::qs(a + c * as);
      bsums[c] = Q8KRow::bsums(a + c * as, n);
      d[c] = Q8KRow::d(a + c * as, n);
    }
  }
};

// Every tile ends the same way: one horizontal sum per (row, column) accumulator.
template <int R, int C>
inline void zero(__m256 (&acc)[R][C]) {
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();
  }
}

template <int R, int C>
inline void store_sums(const __m256 (&acc)[R][C], float* y, int64_t ldy) {
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) y[c * ldy + r] = hsum(acc[r][c]);
  }
}

size_t q8_0_bytes(int64_t n) { return Q8Row::bytes(n, false); }
size_t q8_1_bytes(int64_t n) { return Q8Row::bytes(n, true); }
size_t q8_k_bytes(int64_t n) { return Q8KRow::bytes(n); }
size_t f32_bytes(int64_t n) { return round_up(static_cast<size_t>(n) * sizeof(float), kRowAlign); }

void prepare_q8_0(const float* x, uint8_t* dst, int64_t n) {
  auto* d = reinterpret_cast<float*>(dst + n);
  for (int64_t b = 0; b < n / kQK; ++b) {
    float scale;
    quantize_block_q8(x + b * kQK, reinterpret_cast<int8_t*>(dst) + b * kQK, scale);
    d[b] = half_to_float(float_to_half(scale));
  }
}

void prepare_q8_1(const float* x, uint8_t* dst, int64_t n) {
  auto* d = reinterpret_cast<float*>(dst + n);
  float* s = d + n / kQK;
  for (int64_t b = 0; b < n / kQK; ++b) {
    float scale;
    const int sum = quantize_block_q8(x + b * kQK, reinterpret_cast<int8_t*>(dst) + b * kQK, scale);
    d[b] = half_to_float(float_to_half(scale));
    s[b] = half_to_float(float_to_half(scale * static_cast<float>(sum)));
  }
}

// Group sums in the even/odd order of the K-quant scale vectors (see KHeader).
void store_bsums_even_odd(const int16_t* in, int16_t* out) {
  for (int g = 0; g < 8; ++g) {
    out[g] = in[2 * g];
    out[8 + g] = in[2 * g + 1];
  }
}

void prepare_q8_k(const float* x, uint8_t* dst, int64_t n) {
  auto* bsums = reinterpret_cast<int16_t*>(dst + n);
  auto* d = reinterpret_cast<float*>(dst + n + (n / 16) * static_cast<int64_t>(sizeof(int16_t)));
  for (int64_t i = 0; i < n / kQKK; ++i) {
    int16_t sums[16];
    quantize_superblock_q8_k(x + i * kQKK, reinterpret_cast<int8_t*>(dst) + i * kQKK, sums, d[i]);
    store_bsums_even_odd(sums, bsums + i * 16);
  }
}

void prepare_f32(const float* x, uint8_t* dst, int64_t n) {
  std::memcpy(dst, x, static_cast<size_t>(n) * sizeof(float));
}

void prepare_f16(const float* x, uint8_t* dst, int64_t n) { round_through_fp16_row(x, reinterpret_cast<float*>(dst), n); }

void prepare_bf16(const float* x, uint8_t* dst, int64_t n) {
  auto* y = reinterpret_cast<float*>(dst);
  for (int64_t i = 0; i < n; ++i) y[i] = bf16_bits_to_float(float_to_bf16_bits(x[i]));
}

void import_q8_0(const uint8_t* src, uint8_t* dst, int64_t n) {
  const auto* b = reinterpret_cast<const BlockQ8_0*>(src);
  auto* d = reinterpret_cast<float*>(dst + n);
  for (int64_t i = 0; i < n / kQK; ++i) {
    std::memcpy(dst + i * kQK, b[i].qs, kQK);
    d[i] = half_to_float(b[i].d);
  }
}

void import_q8_1(const uint8_t* src, uint8_t* dst, int64_t n) {
  const auto* b = reinterpret_cast<const BlockQ8_1*>(src);
  auto* d = reinterpret_cast<float*>(dst + n);
  float* s = d + n / kQK;
  for (int64_t i = 0; i < n / kQK; ++i) {
    std::memcpy(dst + i * kQK, b[i].qs, kQK);
    d[i] = half_to_float(b[i].d);
    s[i] = half_to_float(b[i].s);
  }
}

void import_q8_k(const uint8_t* src, uint8_t* dst, int64_t n) {
  const auto* b = reinterpret_cast<const BlockQ8_K*>(src);
  auto* bsums = reinterpret_cast<int16_t*>(dst + n);
  auto* d = reinterpret_cast<float*>(dst + n + (n / 16) * static_cast<int64_t>(sizeof(int16_t)));
  for (int64_t i = 0; i < n / kQKK; ++i) {
    std::memcpy(dst + i * kQKK, b[i].qs, kQKK);
    store_bsums_even_odd(b[i].bsums, bsums + i * 16);
    d[i] = b[i].d;
  }
}

void import_f32(const uint8_t* src, uint8_t* dst, int64_t n) {
  std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
}

void import_f16(const uint8_t* src, uint8_t* dst, int64_t n) {
  fp16_to_fp32_row(reinterpret_cast<const uint16_t*>(src), reinterpret_cast<float*>(dst), n);
}

void import_bf16(const uint8_t* src, uint8_t* dst, int64_t n) {
  const auto* h = reinterpret_cast<const uint16_t*>(src);
  auto* y = reinterpret_cast<float*>(dst);
  for (int64_t i = 0; i < n; ++i) y[i] = bf16_bits_to_float(h[i]);
}

// ---------------------------------------------------------------------------------------------------------
// Legacy 32-element formats against Q8_0 / Q8_1 activations.
//
// A decoder turns one weight block into 32 bytes plus its scale (and min). Signed weights (Q4_0, Q5_0,
// Q8_0) go through the sign trick, |w| * (y * sign(w)), because maddubs wants its first operand unsigned;
// Q4_1/Q5_1 quants are unsigned already and carry a min term m * s that joins lane 0 of the accumulator.

// Decoders see a weight row and a block index; n (the row length) locates the scale arrays of packed rows.
template <class Block>
inline const uint8_t* block_at(const uint8_t* row, int64_t b) {
  return row + b * static_cast<int64_t>(sizeof(Block));
}

struct DecodeQ4_0 {
  static constexpr bool kPrefetch = true;
  static constexpr int64_t kPrefetchBytes = sizeof(BlockQ4_0);
  static constexpr bool kSigned = true;
  static constexpr bool kMin = false;
  static __m256i quants(const uint8_t* row, int64_t b, int64_t) {
    return _mm256_sub_epi8(nibbles_32(block_at<BlockQ4_0>(row, b) + 2), _mm256_set1_epi8(8));
  }
  static float d(const uint8_t* row, int64_t b, int64_t) { return load_half(block_at<BlockQ4_0>(row, b)); }
  static float m(const uint8_t*, int64_t, int64_t) { return 0.0f; }
};

struct DecodeQ4_1 {
  static constexpr bool kPrefetch = true;
  static constexpr int64_t kPrefetchBytes = sizeof(BlockQ4_1);
  static constexpr bool kSigned = false;
  static constexpr bool kMin = true;
  static __m256i quants(const uint8_t* row, int64_t b, int64_t) { return nibbles_32(block_at<BlockQ4_1>(row, b) + 4); }
  static float d(const uint8_t* row, int64_t b, int64_t) { return load_half(block_at<BlockQ4_1>(row, b)); }
  static float m(const uint8_t* row, int64_t b, int64_t) { return load_half(block_at<BlockQ4_1>(row, b) + 2); }
};

struct DecodeQ5_0 {
  static constexpr bool kPrefetch = true;
  static constexpr int64_t kPrefetchBytes = sizeof(BlockQ5_0);
  static constexpr bool kSigned = true;
  static constexpr bool kMin = false;
  static __m256i quants(const uint8_t* row, int64_t b, int64_t) {
    // Without its fifth bit a value is nibble - 16, i.e. the nibble with the high four bits set.
    const uint8_t* blk = block_at<BlockQ5_0>(row, b);
    const __m256i high = _mm256_andnot_si256(bits_to_bytes(load_u32(blk + 2)), _mm256_set1_epi8(static_cast<char>(0xF0)));
    return _mm256_or_si256(nibbles_32(blk + 6), high);
  }
  static float d(const uint8_t* row, int64_t b, int64_t) { return load_half(block_at<BlockQ5_0>(row, b)); }
  static float m(const uint8_t*, int64_t, int64_t) { return 0.0f; }
};

struct DecodeQ5_1 {
  static constexpr bool kPrefetch = true;
  static constexpr int64_t kPrefetchBytes = sizeof(BlockQ5_1);
  static constexpr bool kSigned = false;
  static constexpr bool kMin = true;
  static __m256i quants(const uint8_t* row, int64_t b, int64_t) {
    const uint8_t* blk = block_at<BlockQ5_1>(row, b);
    const __m256i high = _mm256_and_si256(bits_to_bytes(load_u32(blk + 4)), _mm256_set1_epi8(0x10));
    return _mm256_or_si256(nibbles_32(blk + 8), high);
  }
  static float d(const uint8_t* row, int64_t b, int64_t) { return load_half(block_at<BlockQ5_1>(row, b)); }
  static float m(const uint8_t* row, int64_t b, int64_t) { return load_half(block_at<BlockQ5_1>(row, b) + 2); }
};

struct DecodeQ8_0 {
  static constexpr bool kPrefetch = true;
  static constexpr int64_t kPrefetchBytes = sizeof(BlockQ8_0);
  static constexpr bool kSigned = true;
  static constexpr bool kMin = false;
  static __m256i quants(const uint8_t* row, int64_t b, int64_t) { return load256(block_at<BlockQ8_0>(row, b) + 2); }
  static float d(const uint8_t* row, int64_t b, int64_t) { return load_half(block_at<BlockQ8_0>(row, b)); }
  static float m(const uint8_t*, int64_t, int64_t) { return 0.0f; }
};

// IQ4_NL: Q4_0's nibbles looked up in the 16-level table with one byte shuffle.
inline __m256i iq4_levels(const uint8_t* nibbles) {
  const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4Values)));
  return _mm256_shuffle_epi8(table, nibbles_32(nibbles));
}

struct DecodeIQ4_NL {
  static constexpr bool kPrefetch = true;
  static constexpr int64_t kPrefetchBytes = sizeof(BlockIQ4_NL);
  static constexpr bool kSigned = true;
  static constexpr bool kMin = false;
  static __m256i quants(const uint8_t* row, int64_t b, int64_t) { return iq4_levels(block_at<BlockIQ4_NL>(row, b) + 2); }
  static float d(const uint8_t* row, int64_t b, int64_t) { return load_half(block_at<BlockIQ4_NL>(row, b)); }
  static float m(const uint8_t*, int64_t, int64_t) { return 0.0f; }
};

// A packed row: the decoded bytes of all blocks (n bytes), then the scales as f32, then the mins.
template <class Source>
struct DecodePacked {
  static constexpr bool kPrefetch = false;
  static constexpr int64_t kPrefetchBytes = 0;
  static constexpr bool kSigned = Source::kSigned;
  static constexpr bool kMin = Source::kMin;
  static size_t row_bytes(int64_t n) {
    return round_up(static_cast<size_t>(n) + static_cast<size_t>(n / kQK) * sizeof(float) * (kMin ? 2 : 1),
                    kRowAlign);
  }
  static __m256i quants(const uint8_t* row, int64_t b, int64_t) { return load256(row + b * kQK); }
  static float d(const uint8_t* row, int64_t b, int64_t n) { return reinterpret_cast<const float*>(row + n)[b]; }
  static float m(const uint8_t* row, int64_t b, int64_t n) {
    return reinterpret_cast<const float*>(row + n)[n / kQK + b];
  }
  static void pack(int64_t n, const uint8_t* w, size_t ws, int nr, uint8_t* dst) {
    const size_t out_stride = row_bytes(n);
    for (int r = 0; r < nr; ++r) {
      const uint8_t* src = w + r * ws;
      uint8_t* out = dst + r * out_stride;
      auto* d = reinterpret_cast<float*>(out + n);
      for (int64_t b = 0; b < n / kQK; ++b) {
        _mm256_store_si256(reinterpret_cast<__m256i*>(out + b * kQK), Source::quants(src, b, n));
        d[b] = Source::d(src, b, n);
        if constexpr (kMin) d[n / kQK + b] = Source::m(src, b, n);
      }
    }
  }
};

template <class Dec, int R, int C>
void legacy_tile(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, int64_t ldy) {
  const int64_t nb = n / kQK;
  const __m256i ones = _mm256_set1_epi16(1);
  const Q8Columns<C> col(a, as, n);
  const auto& aq = col.qs;
  const auto& ad = col.d;
  const auto& asum = col.s;
  __m256 acc[R][C];
  zero(acc);
  for (int64_t b = 0; b < nb; ++b) {
    for (int r = 0; r < R; ++r) {
      const uint8_t* row = w + r * ws;
      // Eight blocks ahead: in a decode step the weights stream from DRAM, and the hardware prefetcher
      // alone leaves about half of the bandwidth unused.
      if constexpr (Dec::kPrefetch) prefetch(row + Dec::kPrefetchBytes * (b + 8));
      const __m256i q = Dec::quants(row, b, n);
      const __m256i uq = Dec::kSigned ? _mm256_sign_epi8(q, q) : q;
      const __m256 dw = _mm256_set1_ps(Dec::d(row, b, n));
      for (int c = 0; c < C; ++c) {
        __m256i yq = load256(aq[c] + b * kQK);
        if constexpr (Dec::kSigned) yq = _mm256_sign_epi8(yq, q);
        const __m256i sums = _mm256_madd_epi16(_mm256_maddubs_epi16(uq, yq), ones);
        const __m256 scale = _mm256_mul_ps(dw, _mm256_broadcast_ss(ad[c] + b));
        acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), scale, acc[r][c]);
        if constexpr (Dec::kMin) {
          // The min term m * s belongs to the block once: it joins lane 0 only.
          const __m256 ms = _mm256_zextps128_ps256(_mm_set_ss(Dec::m(row, b, n) * asum[c][b]));
          acc[r][c] = _mm256_add_ps(acc[r][c], ms);
        }
      }
    }
  }
  store_sums(acc, y, ldy);
}

// The same with AVX-512 VNNI, two blocks per 512-bit register: vpdpbusd replaces maddubs + madd (no int16
// saturation, so the integer block sums are the same), and conversion and scaling run once per two blocks.
// The two halves then join the (row, column) accumulator one block after the other, exactly as in
// legacy_tile, so both tiles give the same bits.
#define ILRE_AVX512_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

template <class Dec>
ILRE_AVX512_VNNI inline __m512i two_blocks(const uint8_t* row, int64_t b, int64_t n, bool second) {
  const __m256i lo = Dec::quants(row, b, n);
  return _mm512_inserti64x4(_mm512_zextsi256_si512(lo), second ? Dec::quants(row, b + 1, n) : _mm256_setzero_si256(), 1);
}

ILRE_AVX512_VNNI inline __m512 two_scales(float lo, float hi) {
  return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_zextpd256_pd512(_mm256_castps_pd(_mm256_set1_ps(lo))),
                                             _mm256_castps_pd(_mm256_set1_ps(hi)), 1));
}

template <class Dec, int R, int C>
ILRE_AVX512_VNNI void legacy_tile512(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y,
                                     int64_t ldy) {
  const int64_t nb = n / kQK;
  const Q8Columns<C> col(a, as, n);
  const auto& aq = col.qs;
  const auto& ad = col.d;
  const auto& asum = col.s;
  __m256 acc[R][C];
  zero(acc);
  for (int64_t b = 0; b < nb; b += 2) {
    const bool pair = b + 1 < nb;
    __m512i yq[C];
    __m512 dy[C];
    for (int c = 0; c < C; ++c) {
      yq[c] = pair ? _mm512_loadu_si512(aq[c] + b * kQK) : _mm512_zextsi256_si512(load256(aq[c] + b * kQK));
      dy[c] = two_scales(ad[c][b], pair ? ad[c][b + 1] : 0.0f);
    }
    for (int r = 0; r < R; ++r) {
      const uint8_t* row = w + r * ws;
      if constexpr (Dec::kPrefetch) {
        prefetch(row + Dec::kPrefetchBytes * (b + 8));
        prefetch(row + Dec::kPrefetchBytes * (b + 9));
      }
      const __m512i q = two_blocks<Dec>(row, b, n, pair);
      const __mmask64 neg = Dec::kSigned ? _mm512_movepi8_mask(q) : 0;
      const __m512i uq = Dec::kSigned ? _mm512_abs_epi8(q) : q;
      const __m512 dw = two_scales(Dec::d(row, b, n), pair ? Dec::d(row, b + 1, n) : 0.0f);
      for (int c = 0; c < C; ++c) {
        // The sign trick: |w| * (y * sign(w)); where w == 0 the product is 0 whatever y becomes.
        const __m512i sy = Dec::kSigned ? _mm512_mask_sub_epi8(yq[c], neg, _mm512_setzero_si512(), yq[c]) : yq[c];
        const __m512 f = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), uq, sy));
        const __m512 scale = _mm512_mul_ps(dw, dy[c]);
        acc[r][c] = _mm256_fmadd_ps(_mm512_castps512_ps256(f), _mm512_castps512_ps256(scale), acc[r][c]);
        if constexpr (Dec::kMin) {
          const __m256 ms = _mm256_zextps128_ps256(_mm_set_ss(Dec::m(row, b, n) * asum[c][b]));
          acc[r][c] = _mm256_add_ps(acc[r][c], ms);
        }
        if (pair) {
          const __m256 f1 = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(f), 1));
          const __m256 s1 = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(scale), 1));
          acc[r][c] = _mm256_fmadd_ps(f1, s1, acc[r][c]);
          if constexpr (Dec::kMin) {
            const __m256 ms = _mm256_zextps128_ps256(_mm_set_ss(Dec::m(row, b + 1, n) * asum[c][b + 1]));
            acc[r][c] = _mm256_add_ps(acc[r][c], ms);
          }
        }
      }
    }
  }
  store_sums(acc, y, ldy);
}

// ---------------------------------------------------------------------------------------------------------
// K-quants against Q8_K activations.
//
// A decoder gives, per 256-element super-block, the scales of the sixteen 16-element groups, the super-
// block scales d/dmin and the per-group mins, and per 32-element chunk k the unsigned quants as bytes.
// Q3_K and Q6_K store signed quants; their decoders add an offset (4 or 32) that the tile takes back out
// as offset * sum_g scale_g * bsum_g, like ggml does for Q6_K.

// Scales are kept as sixteen int16 lanes in "even/odd" order: lanes 0..7 hold the scales of groups
// 0, 2, ..., 14 and lanes 8..15 those of groups 1, 3, ..., 15. One byte shuffle (which works within each
// 128-bit half) then yields chunk k's scale vector: group 2k's scale in lanes 0..7 and group 2k+1's in
// lanes 8..15, matching the pairs maddubs formed from elements 0..15 and 16..31 of the chunk. The
// activation's group sums (bsums) are stored in the same order, so madd(bsums, scales) needs no shuffle.
struct KHeader {
  float d;
  float dmin;
  __m256i scales;  // even/odd order
  __m256i mins;    // even/odd order; zero for types without mins
};

alignas(32) constexpr uint8_t kPickScale[8][32] = {
#define ILRE_PICK(k) {2 * k, 2 * k + 1, 2 * k, 2 * k + 1, 2 * k, 2 * k + 1, 2 * k, 2 * k + 1, \
                      2 * k, 2 * k + 1, 2 * k, 2 * k + 1, 2 * k, 2 * k + 1, 2 * k, 2 * k + 1, \
                      2 * k, 2 * k + 1, 2 * k, 2 * k + 1, 2 * k, 2 * k + 1, 2 * k, 2 * k + 1, \
                      2 * k, 2 * k + 1, 2 * k, 2 * k + 1, 2 * k, 2 * k + 1, 2 * k, 2 * k + 1}
    ILRE_PICK(0), ILRE_PICK(1), ILRE_PICK(2), ILRE_PICK(3), ILRE_PICK(4), ILRE_PICK(5), ILRE_PICK(6), ILRE_PICK(7),
#undef ILRE_PICK
};

inline __m256i chunk_scales(const KHeader& h, int k) {
  return _mm256_shuffle_epi8(h.scales, _mm256_load_si256(reinterpret_cast<const __m256i*>(kPickScale[k])));
}

// Sixteen bytes in group order -> sixteen int16 in even/odd order.
inline __m256i even_odd_i16(__m128i bytes, bool is_signed) {
  const __m128i eo = _mm_shuffle_epi8(bytes, _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15));
  return is_signed ? _mm256_cvtepi8_epi16(eo) : _mm256_cvtepu8_epi16(eo);
}

// Q4_K/Q5_K: eight six-bit scales and eight six-bit mins packed into 12 bytes. The first four of each sit
// in the low six bits of bytes 0..3 (scales) and 4..7 (mins); the last four take their low nibbles from
// bytes 8..11 and their top two bits from the spare bits 6..7 of bytes 0..3 / 4..7.
inline void k4_header(const uint8_t* packed, KHeader& h) {
  const uint32_t u0 = load_u32(packed), u1 = load_u32(packed + 4), u2 = load_u32(packed + 8);
  const uint32_t sc_lo = u0 & 0x3f3f3f3fu;
  const uint32_t mn_lo = u1 & 0x3f3f3f3fu;
  const uint32_t sc_hi = (u2 & 0x0f0f0f0fu) | (((u0 >> 6) & 0x03030303u) << 4);
  const uint32_t mn_hi = ((u2 >> 4) & 0x0f0f0f0fu) | (((u1 >> 6) & 0x03030303u) << 4);
  const __m256i both = _mm256_cvtepu8_epi16(_mm_setr_epi32(static_cast<int>(sc_lo), static_cast<int>(sc_hi),
                                                           static_cast<int>(mn_lo), static_cast<int>(mn_hi)));
  // Both groups of a 32-element sub-block share its scale: the even and odd halves are the same 8 values.
  h.scales = _mm256_permute4x64_epi64(both, 0x44);
  h.mins = _mm256_permute4x64_epi64(both, 0xEE);
}

struct DecodeQ2_K {
  static constexpr size_t kBytes = sizeof(BlockQ2_K);
  static constexpr int kOffsetShift = -1;  // no offset
  static constexpr bool kMin = true;
  static void header(const uint8_t* b, KHeader& h) {
    h.d = load_half(b + 80);
    h.dmin = load_half(b + 82);
    const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b));
    h.scales = even_odd_i16(_mm_and_si128(packed, _mm_set1_epi8(0x0F)), false);
    h.mins = even_odd_i16(_mm_and_si128(_mm_srli_epi16(packed, 4), _mm_set1_epi8(0x0F)), false);
  }
  template <int k>
  static __m256i chunk(const uint8_t* b) {
    const __m256i bits = load256(b + 16 + (k / 4) * 32);
    return _mm256_and_si256(_mm256_srli_epi16(bits, 2 * (k % 4)), _mm256_set1_epi8(3));
  }
};

struct DecodeQ3_K {
  static constexpr size_t kBytes = sizeof(BlockQ3_K);
  static constexpr int kOffsetShift = 2;  // quants stored as value + 4
  static constexpr bool kMin = false;
  static void header(const uint8_t* b, KHeader& h) {
    h.d = load_half(b + 108);
    h.dmin = 0.0f;
    alignas(16) int8_t sc[16];
    for (int g = 0; g < 16; ++g) sc[g] = static_cast<int8_t>(q3k_scale(g, b + 96));
    h.scales = even_odd_i16(_mm_load_si128(reinterpret_cast<const __m128i*>(sc)), true);
    h.mins = _mm256_setzero_si256();
  }
  template <int k>
  static __m256i chunk(const uint8_t* b) {
    const __m256i low = _mm256_and_si256(_mm256_srli_epi16(load256(b + 32 + (k / 4) * 32), 2 * (k % 4)),
                                         _mm256_set1_epi8(3));
    const __m256i high = _mm256_and_si256(_mm256_srli_epi16(load256(b), k), _mm256_set1_epi8(1));
    return _mm256_or_si256(low, _mm256_slli_epi16(high, 2));
  }
};

struct DecodeQ4_K {
  static constexpr size_t kBytes = sizeof(BlockQ4_K);
  static constexpr int kOffsetShift = -1;
  static constexpr bool kMin = true;
  static void header(const uint8_t* b, KHeader& h) {
    h.d = load_half(b);
    h.dmin = load_half(b + 2);
    k4_header(b + 4, h);
  }
  template <int k>
  static __m256i chunk(const uint8_t* b) {
    const __m256i bytes = load256(b + 16 + (k / 2) * 32);
    return _mm256_and_si256(k % 2 ? _mm256_srli_epi16(bytes, 4) : bytes, _mm256_set1_epi8(0x0F));
  }
};

struct DecodeQ5_K {
  static constexpr size_t kBytes = sizeof(BlockQ5_K);
  static constexpr int kOffsetShift = -1;
  static constexpr bool kMin = true;
  static void header(const uint8_t* b, KHeader& h) {
    h.d = load_half(b);
    h.dmin = load_half(b + 2);
    k4_header(b + 4, h);
  }
  template <int k>
  static __m256i chunk(const uint8_t* b) {
    const __m256i bytes = load256(b + 48 + (k / 2) * 32);
    const __m256i low = _mm256_and_si256(k % 2 ? _mm256_srli_epi16(bytes, 4) : bytes, _mm256_set1_epi8(0x0F));
    const __m256i high = _mm256_and_si256(_mm256_srli_epi16(load256(b + 16), k), _mm256_set1_epi8(1));
    return _mm256_or_si256(low, _mm256_slli_epi16(high, 4));
  }
};

struct DecodeQ6_K {
  static constexpr size_t kBytes = sizeof(BlockQ6_K);
  static constexpr int kOffsetShift = 5;  // quants stored as value + 32
  static constexpr bool kMin = false;
  static void header(const uint8_t* b, KHeader& h) {
    h.d = load_half(b + 208);
    h.dmin = 0.0f;
    h.scales = even_odd_i16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 192)), true);
    h.mins = _mm256_setzero_si256();
  }
  template <int k>
  static __m256i chunk(const uint8_t* b) {
    constexpr int half = k / 4, quarter = k % 4;
    const __m256i lbytes = load256(b + half * 64 + (quarter & 1) * 32);
    const __m256i low =
        _mm256_and_si256(quarter < 2 ? lbytes : _mm256_srli_epi16(lbytes, 4), _mm256_set1_epi8(0x0F));
    const __m256i hbits = _mm256_and_si256(_mm256_srli_epi16(load256(b + 128 + half * 32), 2 * quarter),
                                           _mm256_set1_epi8(3));
    return _mm256_or_si256(low, _mm256_slli_epi16(hbits, 4));
  }
};

// One super-block's integer sums (isum, 8 int32 lanes per row and column) into the float accumulators:
// the offset and min terms from the activation's group sums, then the super-block scales.
template <class Dec, int R, int C>
inline void k_superblock_sums(const __m256i (&isum)[R][C], const KHeader (&h)[R], const Q8KColumns<C>& col, int64_t i,
                              __m256 (&acc)[R][C]) {
  for (int c = 0; c < C; ++c) {
    const __m256i bsums = load256(col.bsums[c] + i * 16);
    const float dy = col.d[c][i];
    for (int r = 0; r < R; ++r) {
      __m256i total = isum[r][c];
      if constexpr (Dec::kOffsetShift >= 0) {
        total = _mm256_sub_epi32(total, _mm256_slli_epi32(_mm256_madd_epi16(bsums, h[r].scales), Dec::kOffsetShift));
      }
      acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(total), _mm256_set1_ps(h[r].d * dy), acc[r][c]);
      if constexpr (Dec::kMin) {
        const __m256 mins = _mm256_cvtepi32_ps(_mm256_madd_epi16(bsums, h[r].mins));
        acc[r][c] = _mm256_fmadd_ps(mins, _mm256_set1_ps(-h[r].dmin * dy), acc[r][c]);
      }
    }
  }
}

// The integer sums of one super-block, isum[r][c] = sum over its eight 32-element chunks of the scale-
// weighted products, at one register width. The tile around them (k_tile) is the same for both.
struct KSums256 {
  template <class Dec, int R, int C>
  static void superblock(const uint8_t* w, size_t ws, int64_t i, const KHeader (&h)[R], const int8_t* const (&aq)[C],
                         __m256i (&isum)[R][C]) {
    for (int r = 0; r < R; ++r) {
      for (int c = 0; c < C; ++c) isum[r][c] = _mm256_setzero_si256();
    }
    // The chunk index is a template argument so that every shift count and branch is resolved at compile time.
    const auto chunk = [&]<int k>(std::integral_constant<int, k>) {
      for (int r = 0; r < R; ++r) {
        // Two super-blocks ahead, an eighth of one per chunk (see legacy_tile).
        prefetch(w + r * ws + (i + 2) * Dec::kBytes + k * Dec::kBytes / 8);
        const __m256i q = Dec::template chunk<k>(w + r * ws + i * Dec::kBytes);
        const __m256i sc = chunk_scales(h[r], k);
        for (int c = 0; c < C; ++c) {
          const __m256i p = _mm256_maddubs_epi16(q, load256(aq[c] + i * kQKK + k * 32));
          isum[r][c] = _mm256_add_epi32(isum[r][c], _mm256_madd_epi16(p, sc));
        }
      }
    };
    [&]<int... k>(std::integer_sequence<int, k...>) {
      (chunk(std::integral_constant<int, k>{}), ...);
    }(std::make_integer_sequence<int, kQKK / 32>{});
  }
};

// 512-bit registers: two chunks per maddubs/madd, even chunks in the low half, odd ones in the high half;
// the halves are added as integers at the end, so the sums equal KSums256's exactly. No lambdas here: a
// lambda does not inherit its function's target attribute, and a build for an older baseline would then
// refuse the AVX-512 intrinsics inside it.
template <class Dec, int R, int C, int k>
ILRE_AVX512_VNNI inline void k512_chunk_pair(const uint8_t* w, size_t ws, int64_t i, const KHeader (&h)[R],
                                             const int8_t* const (&aq)[C], __m512i (&wide)[R][C]) {
  for (int r = 0; r < R; ++r) {
    prefetch(w + r * ws + (i + 2) * Dec::kBytes + k * Dec::kBytes / 8);
    const uint8_t* blk = w + r * ws + i * Dec::kBytes;
    const __m512i q = _mm512_inserti64x4(_mm512_zextsi256_si512(Dec::template chunk<k>(blk)),
                                         Dec::template chunk<k + 1>(blk), 1);
    const __m512i sc = _mm512_inserti64x4(_mm512_zextsi256_si512(chunk_scales(h[r], k)), chunk_scales(h[r], k + 1), 1);
    for (int c = 0; c < C; ++c) {
      const __m512i p = _mm512_maddubs_epi16(q, _mm512_loadu_si512(aq[c] + i * kQKK + k * 32));
      wide[r][c] = _mm512_add_epi32(wide[r][c], _mm512_madd_epi16(p, sc));
    }
  }
}

template <class Dec, int R, int C, int... j>
ILRE_AVX512_VNNI inline void k512_chunk_pairs(const uint8_t* w, size_t ws, int64_t i, const KHeader (&h)[R],
                                              const int8_t* const (&aq)[C], __m512i (&wide)[R][C],
                                              std::integer_sequence<int, j...>) {
  (k512_chunk_pair<Dec, R, C, 2 * j>(w, ws, i, h, aq, wide), ...);
}

struct KSums512 {
  template <class Dec, int R, int C>
  ILRE_AVX512_VNNI static void superblock(const uint8_t* w, size_t ws, int64_t i, const KHeader (&h)[R],
                                          const int8_t* const (&aq)[C], __m256i (&isum)[R][C]) {
    __m512i wide[R][C];
    for (int r = 0; r < R; ++r) {
      for (int c = 0; c < C; ++c) wide[r][c] = _mm512_setzero_si512();
    }
    k512_chunk_pairs<Dec, R, C>(w, ws, i, h, aq, wide, std::make_integer_sequence<int, kQKK / 64>{});
    for (int r = 0; r < R; ++r) {
      for (int c = 0; c < C; ++c) {
        isum[r][c] = _mm256_add_epi32(_mm512_castsi512_si256(wide[r][c]), _mm512_extracti64x4_epi64(wide[r][c], 1));
      }
    }
  }
};

template <class Dec, class Sums, int R, int C>
void k_tile(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, int64_t ldy) {
  const int64_t nsb = n / kQKK;
  const Q8KColumns<C> col(a, as, n);
  __m256 acc[R][C];
  zero(acc);
  for (int64_t i = 0; i < nsb; ++i) {
    KHeader h[R];
    for (int r = 0; r < R; ++r) Dec::header(w + r * ws + i * Dec::kBytes, h[r]);
    __m256i isum[R][C];
    Sums::template superblock<Dec, R, C>(w, ws, i, h, col.qs, isum);
    k_superblock_sums<Dec, R, C>(isum, h, col, i, acc);
  }
  store_sums(acc, y, ldy);
}

// ---------------------------------------------------------------------------------------------------------
// IQ4_XS against Q8_K activations: each 32-element sub-block's table levels times the activation through
// the sign trick, weighted by its six-bit scale (minus 32) in the int16 -> int32 widening, summed in
// integers over the super-block, then one float FMA per super-block.

template <int R, int C>
void iq4xs_tile(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, int64_t ldy) {
  const int64_t nsb = n / kQKK;
  const Q8KColumns<C> col(a, as, n);
  const auto& aq = col.qs;
  const auto& ad = col.d;
  __m256 acc[R][C];
  zero(acc);
  for (int64_t i = 0; i < nsb; ++i) {
    __m256i isum[R][C];
    for (int r = 0; r < R; ++r) {
      for (int c = 0; c < C; ++c) isum[r][c] = _mm256_setzero_si256();
    }
    for (int ib = 0; ib < kQKK / kQK; ++ib) {
      for (int r = 0; r < R; ++r) {
        const auto& blk = *reinterpret_cast<const BlockIQ4_XS*>(w + r * ws + i * sizeof(BlockIQ4_XS));
        if (ib == 0) prefetch(w + r * ws + (i + 2) * sizeof(BlockIQ4_XS));
        const __m256i q = iq4_levels(blk.qs + ib * (kQK / 2));
        const __m256i uq = _mm256_sign_epi8(q, q);
        const __m256i scale = _mm256_set1_epi16(static_cast<int16_t>(iq4_xs_scale(blk, ib)));
        for (int c = 0; c < C; ++c) {
          const __m256i yq = _mm256_sign_epi8(load256(aq[c] + i * kQKK + ib * kQK), q);
          isum[r][c] = _mm256_add_epi32(isum[r][c], _mm256_madd_epi16(_mm256_maddubs_epi16(uq, yq), scale));
        }
      }
    }
    for (int r = 0; r < R; ++r) {
      const float dw = load_half(w + r * ws + i * sizeof(BlockIQ4_XS));
      for (int c = 0; c < C; ++c) {
        acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r][c]), _mm256_set1_ps(dw * ad[c][i]), acc[r][c]);
      }
    }
  }
  store_sums(acc, y, ldy);
}

struct IQ4XS {
  template <int R, int C>
  struct T {
    static void run(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, int64_t ldy) {
      iq4xs_tile<R, C>(n, w, ws, a, as, y, ldy);
    }
  };
};

// ---------------------------------------------------------------------------------------------------------
// F32, F16 and BF16 weights against f32 activations (already rounded like ggml's F16/BF16 activations).

struct LoadF32 {
  static constexpr int64_t kBytes = 4;
  static __m256 load8(const uint8_t* row, int64_t i) { return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + i); }
  static float one(const uint8_t* row, int64_t i) { return reinterpret_cast<const float*>(row)[i]; }
};
struct LoadF16 {
  static constexpr int64_t kBytes = 2;
  static __m256 load8(const uint8_t* row, int64_t i) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * i)));
  }
  static float one(const uint8_t* row, int64_t i) { return half_to_float(load_u16(row + 2 * i)); }
};
struct LoadBF16 {
  static constexpr int64_t kBytes = 2;
  static __m256 load8(const uint8_t* row, int64_t i) {
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * i)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
  }
  static float one(const uint8_t* row, int64_t i) { return bf16_bits_to_float(load_u16(row + 2 * i)); }
};

// The last n % 8 elements, zero-padded to one vector (lanes keep their positions).
template <class Load>
inline __m256 load_tail(const uint8_t* row, int64_t i, int64_t n) {
  alignas(32) float t[8] = {};
  for (int64_t j = i; j < n; ++j) t[j - i] = Load::one(row, j);
  return _mm256_load_ps(t);
}

template <class Load, class ActLoad, int R, int C>
void float_tile_with(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, int64_t ldy) {
  __m256 acc[R][C];
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();
  }
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 xv[C];
    for (int c = 0; c < C; ++c) xv[c] = ActLoad::load8(a + c * as, i);
    for (int r = 0; r < R; ++r) {
      if constexpr (C == 1) prefetch(w + r * ws + Load::kBytes * (i + 128));  // decode streams from DRAM
      const __m256 wv = Load::load8(w + r * ws, i);
      for (int c = 0; c < C; ++c) acc[r][c] = _mm256_fmadd_ps(wv, xv[c], acc[r][c]);
    }
  }
  if (i < n) {
    __m256 xv[C];
    for (int c = 0; c < C; ++c) xv[c] = load_tail<ActLoad>(a + c * as, i, n);
    for (int r = 0; r < R; ++r) {
      const __m256 wv = load_tail<Load>(w + r * ws, i, n);
      for (int c = 0; c < C; ++c) acc[r][c] = _mm256_fmadd_ps(wv, xv[c], acc[r][c]);
    }
  }
  store_sums(acc, y, ldy);
}

// Prepared activations are f32 whatever the weight type.
template <class Load, int R, int C>
void float_tile(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, int64_t ldy) {
  float_tile_with<Load, LoadF32, R, C>(n, w, ws, a, as, y, ldy);
}

// vec_dot straight from ggml's F32/F16/BF16 activation row: converting fp16/bf16 to f32 is exact, so this
// is the 1x1 tile's arithmetic on the same numbers.
template <class Load>
float float_dot_ggml(int64_t n, const uint8_t* w, const uint8_t* a) {
  float out;
  float_tile_with<Load, Load, 1, 1>(n, w, 0, a, 0, &out, 1);
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Dispatch from the run-time (nr, nc) of a tile to the unrolled instantiation.

using TileFn = void (*)(int64_t, const uint8_t*, size_t, const uint8_t*, size_t, float*, int64_t);

template <template <int, int> class Tile, int R, int C>
struct TileTable {
  template <size_t... I>
  static constexpr std::array<TileFn, R * C> make(std::index_sequence<I...>) {
    return {&Tile<static_cast<int>(I) / C + 1, static_cast<int>(I) % C + 1>::run...};
  }
  static constexpr std::array<TileFn, R * C> kFns = make(std::make_index_sequence<R * C>{});

  static void tile(int64_t n, const uint8_t* w, size_t ws, int nr, const uint8_t* a, size_t as, int nc, float* y,
                   int64_t ldy) {
    kFns[static_cast<size_t>((nr - 1) * C + (nc - 1))](n, w, ws, a, as, y, ldy);
  }
};

template <class Dec>
struct Legacy {
  template <int R, int C>
  struct T {
    static void run(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, int64_t ldy) {
      legacy_tile<Dec, R, C>(n, w, ws, a, as, y, ldy);
    }
  };
};

template <class Dec>
struct Legacy512 {
  template <int R, int C>
  struct T {
    static void run(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, int64_t ldy) {
      legacy_tile512<Dec, R, C>(n, w, ws, a, as, y, ldy);
    }
  };
};

template <class Dec, class Sums>
struct KQuant {
  template <int R, int C>
  struct T {
    static void run(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, int64_t ldy) {
      k_tile<Dec, Sums, R, C>(n, w, ws, a, as, y, ldy);
    }
  };
};

template <class Load>
struct Float {
  template <int R, int C>
  struct T {
    static void run(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, int64_t ldy) {
      float_tile<Load, R, C>(n, w, ws, a, as, y, ldy);
    }
  };
};

// Register tiles, measured on Zen 3 (16 ymm registers; the compiler spills larger ones).
constexpr int kLegacyRows = 3, kLegacyCols = 5;
constexpr int kLegacy512Rows = 4, kLegacy512Cols = 5;  // 32 zmm registers
constexpr int kKRows = 2, kKCols = 6;
constexpr int kFloatRows = 4, kFloatCols = 3;

template <template <int, int> class Tile, int R, int C>
MatmulKernel make_kernel(size_t (*bytes)(int64_t), void (*prepare)(const float*, uint8_t*, int64_t),
                         void (*import)(const uint8_t*, uint8_t*, int64_t)) {
  MatmulKernel k;
  k.act_bytes = bytes;
  k.prepare = prepare;
  k.import_ggml = import;
  k.tile = &TileTable<Tile, R, C>::tile;
  k.max_rows = R;
  k.max_cols = C;
  return k;
}

// The 32-element formats at one register width (Tiles: Legacy or Legacy512). Prefill packs a chunk of weight
// rows first, so that the Q4/Q5 bit unpacking is not repeated for every group of columns.
template <template <class> class Tiles, int R, int C, class Dec>
MatmulKernel legacy_kernel() {
  constexpr bool q8_1 = Dec::kMin;
  MatmulKernel k = make_kernel<Tiles<Dec>::template T, R, C>(q8_1 ? q8_1_bytes : q8_0_bytes, q8_1 ? prepare_q8_1 : prepare_q8_0,
                                                          q8_1 ? import_q8_1 : import_q8_0);
  using Packed = DecodePacked<Dec>;
  k.packed_row_bytes = Packed::row_bytes;
  k.pack_rows = Packed::pack;
  k.packed_tile = &TileTable<Tiles<Packed>::template T, R, C>::tile;
  return k;
}

template <class Dec, class Sums>
MatmulKernel k_kernel() {
  return make_kernel<KQuant<Dec, Sums>::template T, kKRows, kKCols>(q8_k_bytes, prepare_q8_k, import_q8_k);
}

template <class Load>
MatmulKernel float_kernel(void (*prepare)(const float*, uint8_t*, int64_t),
                          void (*import)(const uint8_t*, uint8_t*, int64_t)) {
  MatmulKernel k = make_kernel<Float<Load>::template T, kFloatRows, kFloatCols>(f32_bytes, prepare, import);
  k.dot_ggml = float_dot_ggml<Load>;
  return k;
}

}  // namespace

// The quantised formats' kernels at one register width: kWide picks the AVX-512 VNNI tiles, which give the
// same bits as the AVX2 ones.
template <bool kWide>
const MatmulKernel* quantised_kernel(GgmlType type) {
  const auto legacy = []<class Dec>(Dec) {
    if constexpr (kWide) return legacy_kernel<Legacy512, kLegacy512Rows, kLegacy512Cols, Dec>();
    else return legacy_kernel<Legacy, kLegacyRows, kLegacyCols, Dec>();
  };
  using Sums = std::conditional_t<kWide, KSums512, KSums256>;
  const auto kq = []<class Dec>(Dec) { return k_kernel<Dec, Sums>(); };
  static const MatmulKernel kQ4_0 = legacy(DecodeQ4_0{});
  static const MatmulKernel kQ4_1 = legacy(DecodeQ4_1{});
  static const MatmulKernel kQ5_0 = legacy(DecodeQ5_0{});
  static const MatmulKernel kQ5_1 = legacy(DecodeQ5_1{});
  static const MatmulKernel kQ8_0 = legacy(DecodeQ8_0{});
  static const MatmulKernel kIQ4_NL = legacy(DecodeIQ4_NL{});
  static const MatmulKernel kQ2_K = kq(DecodeQ2_K{});
  static const MatmulKernel kQ3_K = kq(DecodeQ3_K{});
  static const MatmulKernel kQ4_K = kq(DecodeQ4_K{});
  static const MatmulKernel kQ5_K = kq(DecodeQ5_K{});
  static const MatmulKernel kQ6_K = kq(DecodeQ6_K{});
  // IQ4_XS has one tile for both widths.
  static const MatmulKernel kIQ4_XS =
      make_kernel<IQ4XS::template T, kKRows, kKCols>(q8_k_bytes, prepare_q8_k, import_q8_k);
  switch (type) {
    case GgmlType::Q4_0: return &kQ4_0;
    case GgmlType::Q4_1: return &kQ4_1;
    case GgmlType::Q5_0: return &kQ5_0;
    case GgmlType::Q5_1: return &kQ5_1;
    case GgmlType::Q8_0: return &kQ8_0;
    case GgmlType::IQ4_NL: return &kIQ4_NL;
    case GgmlType::Q2_K: return &kQ2_K;
    case GgmlType::Q3_K: return &kQ3_K;
    case GgmlType::Q4_K: return &kQ4_K;
    case GgmlType::Q5_K: return &kQ5_K;
    case GgmlType::Q6_K: return &kQ6_K;
    case GgmlType::IQ4_XS: return &kIQ4_XS;
    default: return nullptr;
  }
}

const MatmulKernel* matmul_kernel(GgmlType type, KernelIsa isa) {
  static const MatmulKernel kF32 = float_kernel<LoadF32>(prepare_f32, import_f32);
  static const MatmulKernel kF16 = float_kernel<LoadF16>(prepare_f16, import_f16);
  static const MatmulKernel kBF16 = float_kernel<LoadBF16>(prepare_bf16, import_bf16);
  switch (type) {
    case GgmlType::F32: return &kF32;
    case GgmlType::F16: return &kF16;
    case GgmlType::BF16: return &kBF16;
    default: return isa == KernelIsa::avx512_vnni ? quantised_kernel<true>(type) : quantised_kernel<false>(type);
  }
}

}  // namespace ilre::model::kernels::avx2

#endif  // ILRE_AVX2_KERNELS
