#include "retrieval/scoring.h"

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <limits>

#include "ilre/error.h"
#include "model/kernels/key_logits.h"

namespace ilre::retrieval {
namespace {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstStrided = Eigen::Map<const RowMat, 0, Eigen::OuterStride<>>;

// Keys per GEMM: 2048 keys x (4 heads x 64 query tokens) logits = 2 MiB, comfortably in L2/L3. The logits are
// column-major so that each softmax column (one query head and token over the tile's keys) is contiguous:
// max, exp and the sums over heads and queries then run as vector operations.
constexpr int64_t kKeyTile = 2048;

// Adds a block's (max, sum of exp(x - max)) to a running pair; exact up to rounding in either order.
void merge_column(float& max, double& sum, float block_max, double block_sum) {
  const float new_max = std::max(max, block_max);
  if (new_max == -std::numeric_limits<float>::infinity()) return;
  sum = sum * std::exp(static_cast<double>(max) - new_max) + block_sum * std::exp(static_cast<double>(block_max) - new_max);
  max = new_max;
}

// logits[t, cols] (column-major) of keys [j0, j0 + t) of kv head g against that head's query rows
// q_rows [cols, d].
void tile_logits(const KeyBlock& keys, const std::vector<float>& q_rows, int64_t cols, int64_t d, int64_t n_head_kv,
                 int64_t j0, int64_t t, int64_t g, Eigen::MatrixXf& logits) {
  if (keys.type != KeyBlock::Type::f32) {
    if (!keys.channel_major) throw Exception(errc::internal, "scoring: 16-bit keys must be channel-major");
    logits.resize(t, cols);
    const auto* k16 = static_cast<const uint16_t*>(keys.data) + g * d * keys.n;
    model::kernels::key_logits_16(k16, keys.n, keys.type == KeyBlock::Type::f16 ? model::kernels::Key16::f16 : model::kernels::Key16::bf16,
                                  j0, t, d, q_rows.data(), cols, logits.data(), t);
    return;
  }
  const auto* k32 = static_cast<const float*>(keys.data);
  ConstStrided qg(q_rows.data(), cols, d, Eigen::OuterStride<>(d));
  if (keys.channel_major) {
    Eigen::Map<const Eigen::MatrixXf, 0, Eigen::OuterStride<>> k(k32 + g * d * keys.n + j0, t, d, Eigen::OuterStride<>(keys.n));
    logits.noalias() = k * qg.transpose();
  } else {
    ConstStrided k(k32 + j0 * n_head_kv * d + g * d, t, d, Eigen::OuterStride<>(n_head_kv * d));
    logits.noalias() = k * qg.transpose();
  }
}

}  // namespace

void SoftmaxStats::merge(const SoftmaxStats& later) {
  if (later.max.size() != max.size()) throw Exception(errc::internal, "scoring: merging stats of another query");
  for (size_t c = 0; c < max.size(); ++c) merge_column(max[c], sum[c], later.max[c], later.sum[c]);
  observed += later.observed;
}

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
  stats_ = empty_stats();
}

SoftmaxStats QueryScorer::empty_stats() const {
  const auto n_cols = static_cast<size_t>(layout_.n_head * n_q_);
  return SoftmaxStats{.max = std::vector<float>(n_cols, -std::numeric_limits<float>::infinity()),
                      .sum = std::vector<double>(n_cols, 0.0),
                      .observed = 0};
}

void QueryScorer::absorb(const SoftmaxStats& stats) { stats_.merge(stats); }

void QueryScorer::observe(const KeyBlock& keys, SoftmaxStats& into) const {
  const int64_t cols = layout_.n_head / layout_.n_head_kv * n_q_;
  Eigen::MatrixXf logits;
  for (int64_t j0 = 0; j0 < keys.n; j0 += kKeyTile) {
    const int64_t t = std::min(kKeyTile, keys.n - j0);
    for (int64_t g = 0; g < layout_.n_head_kv; ++g) {
      tile_logits(keys, q_by_kv_[static_cast<size_t>(g)], cols, layout_.head_dim, layout_.n_head_kv, j0, t, g, logits);
      for (int64_t c = 0; c < cols; ++c) {
        const auto col = static_cast<size_t>(g * cols + c);
        const float tile_max = logits.col(c).maxCoeff();
        const double tile_sum = (logits.col(c).array() - tile_max).exp().sum();
        merge_column(into.max[col], into.sum[col], tile_max, tile_sum);
      }
    }
  }
  into.observed += keys.n;
}

void QueryScorer::score(const KeyBlock& keys, float* out) const {
  if (cfg_.softmax && stats_.observed == 0) {
    throw Exception(errc::internal, "scoring: pass 2 before any key was observed");
  }
  const int64_t group = layout_.n_head / layout_.n_head_kv;
  const int64_t cols = group * n_q_;
  // A column's probabilities are exp(logit - log_norm): its max plus the log of its sum.
  std::vector<float> log_norm(stats_.max.size());
  for (size_t c = 0; c < log_norm.size(); ++c) {
    log_norm[c] = static_cast<float>(static_cast<double>(stats_.max[c]) + std::log(stats_.sum[c]));
  }
  Eigen::MatrixXf logits;
  Eigen::ArrayXXf per_query;  // [t, n_q]: the heads' aggregate for each query token
  for (int64_t j0 = 0; j0 < keys.n; j0 += kKeyTile) {
    const int64_t t = std::min(kKeyTile, keys.n - j0);
    per_query.resize(t, n_q_);
    for (int64_t g = 0; g < layout_.n_head_kv; ++g) {
      tile_logits(keys, q_by_kv_[static_cast<size_t>(g)], cols, layout_.head_dim, layout_.n_head_kv, j0, t, g, logits);
      for (int64_t hg = 0; hg < group; ++hg) {
        for (int64_t i = 0; i < n_q_; ++i) {
          const int64_t c = hg * n_q_ + i;
          auto v = logits.col(c).array();
          if (cfg_.softmax) v = (v - log_norm[static_cast<size_t>(g * cols + c)]).exp();
          auto acc = per_query.col(i);
          if (g == 0 && hg == 0) {
            acc = v;
          } else if (cfg_.over_heads == Aggregation::sum) {
            acc += v;
          } else {
            acc = acc.max(v);
          }
        }
      }
    }
    Eigen::Map<Eigen::ArrayXf> s(out + j0, t);
    s = per_query.col(0);
    for (int64_t i = 1; i < n_q_; ++i) {
      if (cfg_.over_queries == Aggregation::sum) {
        s += per_query.col(i);
      } else {
        s = s.max(per_query.col(i));
      }
    }
  }
}

}  // namespace ilre::retrieval
