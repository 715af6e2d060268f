#include "retrieval/scoring.h"

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <limits>

#include "ilre/error.h"

namespace ilre::retrieval {
namespace {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstStrided = Eigen::Map<const RowMat, 0, Eigen::OuterStride<>>;

// Keys per GEMM: 2048 keys x (4 heads x 64 query tokens) logits = 2 MiB, comfortably in L2/L3.
constexpr int64_t kKeyTile = 2048;

float combine(Aggregation a, float acc, float v, bool first) {
  if (first) return v;
  return a == Aggregation::sum ? acc + v : std::max(acc, v);
}

}  // namespace

QueryScorer::QueryScorer(std::span<const float> q, int64_t n_q, HeadLayout layout, ScoreConfig cfg)
    : n_q_(n_q), layout_(layout), cfg_(cfg) {
  if (n_q <= 0) throw Exception(errc::invalid_argument, "scoring needs at least one query token");
  if (layout.n_head_kv <= 0 || layout.n_head % layout.n_head_kv != 0 || layout.head_dim <= 0) {
    throw Exception(errc::invalid_argument, "scoring: invalid head layout");
  }
  if (static_cast<int64_t>(q.size()) != n_q * layout.n_head * layout.head_dim) {
    throw Exception(errc::invalid_argument, "scoring: query buffer size does not match n_q x n_head x head_dim");
  }
  const int64_t group = layout.n_head / layout.n_head_kv;
  const int64_t d = layout.head_dim;
  q_by_kv_.resize(static_cast<size_t>(layout.n_head_kv));
  for (int64_t g = 0; g < layout.n_head_kv; ++g) {
    auto& rows = q_by_kv_[static_cast<size_t>(g)];
    rows.resize(static_cast<size_t>(group * n_q * d));
    for (int64_t hg = 0; hg < group; ++hg) {
      const int64_t h = g * group + hg;
      for (int64_t i = 0; i < n_q; ++i) {
        const float* src = q.data() + (i * layout.n_head + h) * d;
        float* dst = rows.data() + (hg * n_q + i) * d;
        for (int64_t c = 0; c < d; ++c) dst[c] = src[c] * cfg.kq_scale;
      }
    }
  }
  const auto n_cols = static_cast<size_t>(layout.n_head * n_q);
  col_max_.assign(n_cols, -std::numeric_limits<float>::infinity());
  col_sum_.assign(n_cols, 0.0);
}

void QueryScorer::observe(const float* keys, int64_t n) {
  const int64_t group = layout_.n_head / layout_.n_head_kv;
  const int64_t cols = group * n_q_;
  const int64_t width = layout_.n_head_kv * layout_.head_dim;
  RowMat logits;
  for (int64_t j0 = 0; j0 < n; j0 += kKeyTile) {
    const int64_t t = std::min(kKeyTile, n - j0);
    for (int64_t g = 0; g < layout_.n_head_kv; ++g) {
      ConstStrided k(keys + j0 * width + g * layout_.head_dim, t, layout_.head_dim, Eigen::OuterStride<>(width));
      ConstStrided qg(q_by_kv_[static_cast<size_t>(g)].data(), cols, layout_.head_dim,
                      Eigen::OuterStride<>(layout_.head_dim));
      logits.noalias() = k * qg.transpose();  // [t, cols]
      for (int64_t c = 0; c < cols; ++c) {
        const auto col = static_cast<size_t>(g * cols + c);
        const float tile_max = logits.col(c).maxCoeff();
        const float new_max = std::max(col_max_[col], tile_max);
        double sum = col_sum_[col] * std::exp(static_cast<double>(col_max_[col]) - new_max);
        for (int64_t j = 0; j < t; ++j) sum += std::exp(static_cast<double>(logits(j, c)) - new_max);
        col_sum_[col] = sum;
        col_max_[col] = new_max;
      }
    }
  }
  observed_ += n;
}

void QueryScorer::score(const float* keys, int64_t n, float* out) const {
  if (cfg_.softmax && observed_ == 0) {
    throw Exception(errc::internal, "scoring: pass 2 before any key was observed");
  }
  const int64_t group = layout_.n_head / layout_.n_head_kv;
  const int64_t cols = group * n_q_;
  const int64_t width = layout_.n_head_kv * layout_.head_dim;
  RowMat logits;
  std::vector<float> per_query(static_cast<size_t>(n_q_));
  for (int64_t j0 = 0; j0 < n; j0 += kKeyTile) {
    const int64_t t = std::min(kKeyTile, n - j0);
    // per_head[j][h][i] accumulated over kv groups, then reduced to one score per key.
    std::vector<float> head_acc(static_cast<size_t>(t * n_q_));
    for (int64_t g = 0; g < layout_.n_head_kv; ++g) {
      ConstStrided k(keys + j0 * width + g * layout_.head_dim, t, layout_.head_dim, Eigen::OuterStride<>(width));
      ConstStrided qg(q_by_kv_[static_cast<size_t>(g)].data(), cols, layout_.head_dim,
                      Eigen::OuterStride<>(layout_.head_dim));
      logits.noalias() = k * qg.transpose();
      for (int64_t j = 0; j < t; ++j) {
        for (int64_t hg = 0; hg < group; ++hg) {
          const bool first_head = g == 0 && hg == 0;
          for (int64_t i = 0; i < n_q_; ++i) {
            const int64_t c = hg * n_q_ + i;
            float v = logits(j, c);
            if (cfg_.softmax) {
              const auto col = static_cast<size_t>(g * cols + c);
              v = static_cast<float>(std::exp(static_cast<double>(v) - col_max_[col]) / col_sum_[col]);
            }
            float& acc = head_acc[static_cast<size_t>(j * n_q_ + i)];
            acc = combine(cfg_.over_heads, acc, v, first_head);
          }
        }
      }
    }
    for (int64_t j = 0; j < t; ++j) {
      float s = 0.0f;
      for (int64_t i = 0; i < n_q_; ++i) s = combine(cfg_.over_queries, s, head_acc[static_cast<size_t>(j * n_q_ + i)], i == 0);
      out[j0 + j] = s;
    }
  }
}

}  // namespace ilre::retrieval
