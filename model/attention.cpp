#include "model/attention.h"

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "model/kernels/gemm.h"
#include "model/kernels/ggml_cpu.h"
#include "model/kernels/ops.h"
#include "model/kernels/quant.h"
#include "model/kernels/quant_kernels.h"

namespace ilre::model {
namespace {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Strided = Eigen::Map<RowMat, 0, Eigen::OuterStride<>>;

// Queries per task and keys per tile: a 64x256 score tile stays in L2 while the two GEMMs run on it.
constexpr int64_t kQueryBlock = 64;
constexpr int64_t kKeyTile = 256;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

struct Block {
  int64_t head;
  int64_t q_begin;
  int64_t q_end;
};

using Map = Eigen::Map<RowMat>;
using kernels::gemm_ab_add;
using kernels::gemm_abt;

// Per-thread buffers the blocks reuse. A block's score rows are a few hundred KB; allocating them per call
// cost an mmap/munmap pair each (glibc) or, once its dynamic threshold rose, fragmented the per-thread
// arenas so that ingest RSS crept up ~2 MB per million tokens. Buffers only grow.
struct Scratch {
  std::vector<float> q, q_successive, q_inter, scores, tile, tile_v, acc, dca_scores;
  std::vector<float> row_max;
  std::vector<double> row_sum;
};

Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

template <typename T>
T* grow(std::vector<T>& v, int64_t n) {
  if (v.size() < static_cast<size_t>(n)) v.resize(static_cast<size_t>(n));
  return v.data();
}

// Copies rows [j0, j0+t) of one head's slice of a cache tensor into a dense F32 [t, width] matrix.
Map load_tile(const void* base, KvType type, int64_t ld, int64_t col0, int64_t width, int64_t j0, int64_t t,
              std::vector<float>& buf) {
  float* out = grow(buf, t * width);
  for (int64_t j = 0; j < t; ++j) {
    float* dst = out + j * width;
    if (type == KvType::f32) {
      const float* src = static_cast<const float*>(base) + (j0 + j) * ld + col0;
      std::copy(src, src + width, dst);
    } else {
      fp16_to_fp32_row(static_cast<const uint16_t*>(base) + (j0 + j) * ld + col0, dst, width);
    }
  }
  return Map(out, t, width);
}

bool visible(const AttentionArgs& a, int32_t q_pos, int32_t k_pos) {
  return k_pos <= q_pos && (a.window <= 0 || static_cast<int64_t>(q_pos) - k_pos < a.window);
}

// Slot range [begin, end) that can be visible to any query of the block: keys are sorted by position.
std::pair<int64_t, int64_t> key_range(const AttentionArgs& a, const Block& b) {
  int32_t p_min = std::numeric_limits<int32_t>::max();
  int32_t p_max = std::numeric_limits<int32_t>::min();
  for (int64_t i = b.q_begin; i < b.q_end; ++i) {
    p_min = std::min(p_min, a.q_pos[static_cast<size_t>(i)]);
    p_max = std::max(p_max, a.q_pos[static_cast<size_t>(i)]);
  }
  const int64_t first = a.window > 0 ? static_cast<int64_t>(p_min) - a.window + 1 : std::numeric_limits<int64_t>::min();
  const int64_t begin = std::lower_bound(a.kv_pos.begin(), a.kv_pos.end(), first,
                                         [](int32_t p, int64_t v) { return p < v; }) - a.kv_pos.begin();
  const int64_t end = std::upper_bound(a.kv_pos.begin(), a.kv_pos.end(), p_max) - a.kv_pos.begin();
  return {begin, std::max(begin, end)};
}

Map load_queries(const AttentionArgs& a, const float* base, const Block& b, bool round_f16, std::vector<float>& buf) {
  const int64_t m = b.q_end - b.q_begin;
  float* q = grow(buf, m * a.head_dim_k);
  for (int64_t i = 0; i < m; ++i) {
    const float* src = base + (b.q_begin + i) * a.ldq + b.head * a.head_dim_k;
    float* dst = q + i * a.head_dim_k;
    if (round_f16) round_through_fp16_row(src, dst, a.head_dim_k);
    else std::copy(src, src + a.head_dim_k, dst);
  }
  return Map(q, m, a.head_dim_k);
}

// DCA's rule for one query and one key: 0 same chunk, 1 the previous chunk, 2 an older one.
int dca_region(int64_t period, int32_t q_pos, int32_t k_pos) {
  const int64_t d = q_pos / period - k_pos / period;
  return d <= 0 ? 0 : (d == 1 ? 1 : 2);
}

// A block's queries in the rotation each DCA region needs (only [0] without DCA), F32 [m, head_dim_k] each.
struct BlockQueries {
  float* data[3] = {nullptr, nullptr, nullptr};
  int64_t m = 0;
  int64_t dim = 0;
  int32_t pos_min = 0;
  int32_t pos_max = 0;
};

BlockQueries load_block_queries(const AttentionArgs& a, const Block& b, bool round_f16, Scratch& sc) {
  BlockQueries bq;
  bq.m = b.q_end - b.q_begin;
  bq.dim = a.head_dim_k;
  bq.data[0] = load_queries(a, a.q, b, round_f16, sc.q).data();
  if (a.dca_period <= 0) return bq;
  bq.data[1] = load_queries(a, a.q_successive, b, round_f16, sc.q_successive).data();
  bq.data[2] = load_queries(a, a.q_inter, b, round_f16, sc.q_inter).data();
  const auto first = a.q_pos.begin() + b.q_begin;
  const auto [lo, hi] = std::minmax_element(first, first + bq.m);
  bq.pos_min = *lo;
  bq.pos_max = *hi;
  return bq;
}

// scores [m, t] (rows ld apart) = the block's queries · keys[0, t)ᵀ, where the keys are cache slots
// [slot0, slot0 + t). Under DCA each pair takes the query rotation of its region; a tile seldom spans two
// regions for a whole block, and then one product serves it.
void score_tile(const AttentionArgs& a, const Block& b, const BlockQueries& bq, const Map& keys, int64_t slot0,
                float* scores, int64_t ld, Scratch& sc) {
  const int64_t m = b.q_end - b.q_begin;
  const int64_t t = keys.rows();
  const int64_t dim = bq.dim;
  if (a.dca_period <= 0) {
    gemm_abt(m, t, dim, bq.data[0], dim, keys.data(), dim, scores, ld);
    return;
  }
  const int r_lo = dca_region(a.dca_period, bq.pos_min, a.kv_pos[static_cast<size_t>(slot0 + t - 1)]);
  const int r_hi = dca_region(a.dca_period, bq.pos_max, a.kv_pos[static_cast<size_t>(slot0)]);
  if (r_lo == r_hi) {
    gemm_abt(m, t, dim, bq.data[r_lo], dim, keys.data(), dim, scores, ld);
    return;
  }
  Strided out(scores, m, t, Eigen::OuterStride<>(ld));
  Map part(grow(sc.dca_scores, m * t), m, t);
  for (int r = r_lo; r <= r_hi; ++r) {
    gemm_abt(m, t, dim, bq.data[r], dim, keys.data(), dim, part.data(), t);
    for (int64_t i = 0; i < m; ++i) {
      const int32_t p = a.q_pos[static_cast<size_t>(b.q_begin + i)];
      for (int64_t j = 0; j < t; ++j) {
        if (dca_region(a.dca_period, p, a.kv_pos[static_cast<size_t>(slot0 + j)]) == r) out(i, j) = part(i, j);
      }
    }
  }
}

Map zeroed(std::vector<float>& buf, int64_t rows, int64_t cols) {
  Map m(grow(buf, rows * cols), rows, cols);
  m.setZero();
  return m;
}

// F16 cache: the full score rows of the block are kept so each row's softmax is normalised exactly as
// ggml's soft_max (max, expf, double sum, one scale) before the probabilities are rounded to F16.
void attend_block_f16(const AttentionArgs& a, const Block& b) {
  const int64_t m = b.q_end - b.q_begin;
  const int64_t kvh = b.head / (a.n_head / a.n_head_kv);
  const auto [j_begin, j_end] = key_range(a, b);
  const int64_t n_keys = j_end - j_begin;
  Strided out(a.out + b.q_begin * a.ldo + b.head * a.head_dim_v, m, a.head_dim_v, Eigen::OuterStride<>(a.ldo));
  if (n_keys == 0) {
    out.setZero();
    return;
  }
  Scratch& sc = scratch();
  const BlockQueries q = load_block_queries(a, b, /*round_f16=*/true, sc);
  Map scores(grow(sc.scores, m * n_keys), m, n_keys);
  for (int64_t j0 = 0; j0 < n_keys; j0 += kKeyTile) {
    const int64_t t = std::min(kKeyTile, n_keys - j0);
    const Map tile = load_tile(a.k, a.kv_type, a.ldk, kvh * a.head_dim_k, a.head_dim_k, j_begin + j0, t, sc.tile);
    score_tile(a, b, q, tile, j_begin + j0, scores.data() + j0, n_keys, sc);
  }
  for (int64_t i = 0; i < m; ++i) {
    const int32_t p = a.q_pos[static_cast<size_t>(b.q_begin + i)];
    float* row = scores.row(i).data();
    float mx = kNegInf;
    for (int64_t j = 0; j < n_keys; ++j) {
      row[j] = visible(a, p, a.kv_pos[static_cast<size_t>(j_begin + j)]) ? row[j] * a.kq_scale : kNegInf;
      mx = std::max(mx, row[j]);
    }
    if (mx == kNegInf) {
      std::fill(row, row + n_keys, 0.0f);
      continue;
    }
    double sum = 0.0;
    for (int64_t j = 0; j < n_keys; ++j) {
      const float e = row[j] == kNegInf ? 0.0f : std::exp(row[j] - mx);
      row[j] = e;
      sum += e;
    }
    const auto inv = static_cast<float>(1.0 / sum);
    for (int64_t j = 0; j < n_keys; ++j) row[j] *= inv;
    round_through_fp16_row(row, row, n_keys);
  }
  Map acc = zeroed(sc.acc, m, a.head_dim_v);
  for (int64_t j0 = 0; j0 < n_keys; j0 += kKeyTile) {
    const int64_t t = std::min(kKeyTile, n_keys - j0);
    const Map tile = load_tile(a.v, a.kv_type, a.ldv, kvh * a.head_dim_v, a.head_dim_v, j_begin + j0, t, sc.tile);
    gemm_ab_add(m, a.head_dim_v, t, scores.data() + j0, n_keys, tile.data(), a.head_dim_v, acc.data(), a.head_dim_v);
  }
  out = acc;
}

// F32 cache: online softmax over key tiles (flash-attention style), memory O(block x tile).
void attend_block_f32(const AttentionArgs& a, const Block& b) {
  const int64_t m = b.q_end - b.q_begin;
  const int64_t kvh = b.head / (a.n_head / a.n_head_kv);
  const auto [j_begin, j_end] = key_range(a, b);
  Strided out(a.out + b.q_begin * a.ldo + b.head * a.head_dim_v, m, a.head_dim_v, Eigen::OuterStride<>(a.ldo));
  Scratch& sc = scratch();
  const BlockQueries q = load_block_queries(a, b, /*round_f16=*/false, sc);

  Map acc = zeroed(sc.acc, m, a.head_dim_v);
  float* row_max = grow(sc.row_max, m);
  double* row_sum = grow(sc.row_sum, m);
  std::fill(row_max, row_max + m, kNegInf);
  std::fill(row_sum, row_sum + m, 0.0);
  for (int64_t j0 = j_begin; j0 < j_end; j0 += kKeyTile) {
    const int64_t t = std::min(kKeyTile, j_end - j0);
    const Map kt = load_tile(a.k, a.kv_type, a.ldk, kvh * a.head_dim_k, a.head_dim_k, j0, t, sc.tile);
    Map st(grow(sc.scores, m * t), m, t);
    score_tile(a, b, q, kt, j0, st.data(), t, sc);
    const Map vt = load_tile(a.v, a.kv_type, a.ldv, kvh * a.head_dim_v, a.head_dim_v, j0, t, sc.tile_v);
    for (int64_t i = 0; i < m; ++i) {
      const int32_t p = a.q_pos[static_cast<size_t>(b.q_begin + i)];
      float* srow = st.row(i).data();
      float tile_max = kNegInf;
      for (int64_t j = 0; j < t; ++j) {
        srow[j] = visible(a, p, a.kv_pos[static_cast<size_t>(j0 + j)]) ? srow[j] * a.kq_scale : kNegInf;
        tile_max = std::max(tile_max, srow[j]);
      }
      float& mx = row_max[i];
      const float new_max = std::max(mx, tile_max);
      if (new_max == kNegInf) {
        std::fill(srow, srow + t, 0.0f);
        continue;
      }
      const float correction = mx == kNegInf ? 0.0f : std::exp(mx - new_max);
      double tile_sum = 0.0;
      for (int64_t j = 0; j < t; ++j) {
        srow[j] = srow[j] == kNegInf ? 0.0f : std::exp(srow[j] - new_max);
        tile_sum += srow[j];
      }
      row_sum[i] = row_sum[i] * correction + tile_sum;
      if (correction != 1.0f) acc.row(i) *= correction;
      mx = new_max;
    }
    gemm_ab_add(m, a.head_dim_v, t, st.data(), t, vt.data(), a.head_dim_v, acc.data(), a.head_dim_v);
  }
  for (int64_t i = 0; i < m; ++i) {
    const double sum = row_sum[i];
    out.row(i) = acc.row(i) * (sum > 0.0 ? static_cast<float>(1.0 / sum) : 0.0f);
  }
}

// ---------------------------------------------------------------------------------------------------------
// F32 cache in ggml's order. llama.cpp (no flash attention) computes kq = K.q with vec_dot (q is a permuted,
// non-contiguous view), soft_max over the whole padded cache row (exp in vectors of `lanes`, each vector's
// sum folded into a double), then kqv = V^T.p with tinyBLAS for a batch of two or more queries and vec_dot
// for one. Cells it pads or masks contribute exact zeros, so only the keys in range are visited; their
// lane in every sum is fixed by their cell index j.

void attend_block_f32_ggml(const AttentionArgs& a, const Block& b) {
  const GgmlCpu& cpu = ggml_cpu();
  const int lanes = cpu.float_lanes;
  const int64_t m = b.q_end - b.q_begin;
  const int64_t kvh = b.head / (a.n_head / a.n_head_kv);
  const auto [j_begin, j_end] = key_range(a, b);
  const int64_t dk = a.head_dim_k;
  const int64_t dv = a.head_dim_v;
  const bool batched = a.n_q >= 2;  // tinyBLAS for kqv; vec_dot for a single query
  Scratch& sc = scratch();
  const auto* kbase = static_cast<const float*>(a.k);
  const auto* vbase = static_cast<const float*>(a.v);
  // Per query: exps by cell from the first group in range, and the kqv accumulators (4 x 16 lanes x dv).
  const int64_t g_begin = j_begin / lanes * lanes;
  const int64_t n_span = j_end - g_begin;
  float* e = grow(sc.scores, std::max<int64_t>(n_span, 1) + lanes);
  float* acc = grow(sc.acc, 4 * 16 * dv);
  for (int64_t i = 0; i < m; ++i) {
    const int64_t qi = b.q_begin + i;
    const float* q = a.q + qi * a.ldq + b.head * dk;
    float* out = a.out + qi * a.ldo + b.head * dv;
    const int32_t p = a.q_pos[static_cast<size_t>(qi)];
    float mx = kNegInf;
    for (int64_t j = g_begin; j < j_end; ++j) {
      float w = kNegInf;
      if (j >= j_begin && visible(a, p, a.kv_pos[static_cast<size_t>(j)])) {
        w = kernels::ggml_vec_dot_f32(kbase + j * a.ldk + kvh * dk, q, dk, lanes) * a.kq_scale;
      }
      e[j - g_begin] = w;
      mx = std::max(mx, w);
    }
    if (mx == kNegInf) {
      std::fill(out, out + dv, 0.0f);
      continue;
    }
    double sum = 0.0;
    const int64_t n_groups = (n_span + lanes - 1) / lanes;
    for (int64_t g = 0; g < n_groups; ++g) {
      float* grp = e + g * lanes;
      for (int l = 0; l < lanes; ++l) {
        const int64_t j = g_begin + g * lanes + l;
        // Cells past the range are masked in llama.cpp too: exp(-inf) = 0.
        grp[l] = j < j_end && grp[l] != kNegInf ? ggml_vector_expf(grp[l] - mx, cpu.exp_avx512) : 0.0f;
      }
      sum += static_cast<double>(kernels::ggml_hsum(grp, lanes));
    }
    const auto inv = static_cast<float>(1.0 / sum);
    std::fill(acc, acc + 4 * 16 * dv, 0.0f);
    const int64_t slots = batched ? lanes : 4 * lanes;  // tinyBLAS: one register; vec_dot: four
    for (int64_t j = j_begin; j < j_end; ++j) {
      const float pj = e[j - g_begin] * inv;
      if (pj == 0.0f) continue;  // fma(v, 0, acc) == acc
      float* row = acc + (j % slots) * dv;
      const float* v = vbase + j * a.ldv + kvh * dv;
      for (int64_t d = 0; d < dv; ++d) row[d] = std::fma(v[d], pj, row[d]);
    }
    for (int64_t d = 0; d < dv; ++d) {
      float s[4][16];
      for (int64_t r = 0; r < slots; ++r) s[r / lanes][r % lanes] = acc[r * dv + d];
      out[d] = batched ? kernels::ggml_hsum(s[0], lanes) : kernels::ggml_fold_vec_dot(s, lanes);
    }
  }
}

}  // namespace

void attention(const AttentionArgs& a, ComputePool& pool) {
  const int64_t q_blocks = (a.n_q + kQueryBlock - 1) / kQueryBlock;
  const int64_t n_tasks = q_blocks * a.n_head;
  pool.parallel_for(n_tasks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t qb = task / a.n_head;
      const Block b{task % a.n_head, qb * kQueryBlock, std::min(a.n_q, (qb + 1) * kQueryBlock)};
      if (a.kv_type == KvType::f16) attend_block_f16(a, b);
      else if (a.ggml_order && a.dca_period <= 0) attend_block_f32_ggml(a, b);
      else attend_block_f32(a, b);
    }
  });
}

}  // namespace ilre::model
