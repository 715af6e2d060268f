#include "retrieval/scoring.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace ilre::retrieval {
namespace {

// Brute force in double: s[j] = agg_i agg_h softmax_j(scale q[h,i]·k[g(h),j]).
std::vector<double> reference(const std::vector<float>& q, const std::vector<float>& k, int64_t n_q, int64_t n,
                              HeadLayout L, ScoreConfig cfg) {
  const int64_t group = L.n_head / L.n_head_kv, d = L.head_dim, w = L.n_head_kv * d;
  std::vector<double> logit(static_cast<size_t>(L.n_head * n_q * n));
  for (int64_t h = 0; h < L.n_head; ++h)
    for (int64_t i = 0; i < n_q; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double dot = 0;
        for (int64_t c = 0; c < d; ++c) dot += double(q[(i * L.n_head + h) * d + c]) * k[j * w + (h / group) * d + c];
        logit[(h * n_q + i) * n + j] = dot * cfg.kq_scale;
      }
  if (cfg.softmax) {
    for (int64_t hi = 0; hi < L.n_head * n_q; ++hi) {
      double mx = -1e300, sum = 0;
      for (int64_t j = 0; j < n; ++j) mx = std::max(mx, logit[hi * n + j]);
      for (int64_t j = 0; j < n; ++j) sum += std::exp(logit[hi * n + j] - mx);
      for (int64_t j = 0; j < n; ++j) logit[hi * n + j] = std::exp(logit[hi * n + j] - mx) / sum;
    }
  }
  std::vector<double> s(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) {
    double total = 0;
    for (int64_t i = 0; i < n_q; ++i) {
      double over_heads = 0;
      for (int64_t h = 0; h < L.n_head; ++h) {
        const double v = logit[(h * n_q + i) * n + j];
        over_heads = h == 0 ? v : (cfg.over_heads == Aggregation::sum ? over_heads + v : std::max(over_heads, v));
      }
      total = i == 0 ? over_heads : (cfg.over_queries == Aggregation::sum ? total + over_heads : std::max(total, over_heads));
    }
    s[static_cast<size_t>(j)] = total;
  }
  return s;
}

std::vector<float> run(QueryScorer& scorer, const std::vector<float>& k, int64_t n, int64_t width, int64_t block) {
  if (scorer.two_pass()) {
    for (int64_t j = 0; j < n; j += block) scorer.observe(k.data() + j * width, std::min(block, n - j));
  }
  std::vector<float> out(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; j += block) scorer.score(k.data() + j * width, std::min(block, n - j), out.data() + j);
  return out;
}

TEST(QueryScorer, MatchesBruteForceForEveryAggregation) {
  std::mt19937 rng(11);
  std::normal_distribution<float> g(0.0f, 1.0f);
  const HeadLayout L{4, 2, 16};
  const int64_t n_q = 5, n = 5000, width = L.n_head_kv * L.head_dim;
  std::vector<float> q(static_cast<size_t>(n_q * L.n_head * L.head_dim)), k(static_cast<size_t>(n * width));
  for (float& x : q) x = g(rng);
  for (float& x : k) x = g(rng);
  for (bool softmax : {true, false}) {
    for (Aggregation heads : {Aggregation::sum, Aggregation::max}) {
      for (Aggregation queries : {Aggregation::sum, Aggregation::max}) {
        const ScoreConfig cfg{softmax, heads, queries, 0.25f};
        QueryScorer scorer(q, n_q, L, cfg);
        const std::vector<float> got = run(scorer, k, n, width, 1234);  // blocks not a multiple of the tile
        const std::vector<double> want = reference(q, k, n_q, n, L, cfg);
        // Error relative to the array's scale: raw (non-softmax) sums cross zero, so per-element relative
        // error is meaningless there.
        double max_err = 0, scale = 0;
        for (int64_t j = 0; j < n; ++j) {
          max_err = std::max(max_err, std::fabs(got[j] - want[j]));
          scale = std::max(scale, std::fabs(want[j]));
        }
        EXPECT_LT(max_err / scale, 1e-5) << "softmax " << softmax;
      }
    }
  }
}

TEST(QueryScorer, SoftmaxScoresOfOneQueryHeadSumToOne) {
  std::mt19937 rng(5);
  std::normal_distribution<float> g(0.0f, 2.0f);
  const HeadLayout L{1, 1, 8};
  std::vector<float> q(8), k(300 * 8);
  for (float& x : q) x = g(rng);
  for (float& x : k) x = g(rng);
  QueryScorer scorer(q, 1, L, ScoreConfig{});
  const std::vector<float> s = run(scorer, k, 300, 8, 64);
  double total = 0;
  for (float v : s) total += v;
  EXPECT_NEAR(total, 1.0, 1e-5);
}

TEST(QueryScorer, AKeyAlignedWithTheQueryScoresHighest) {
  const HeadLayout L{2, 1, 4};
  const std::vector<float> q{1, 0, 0, 0, 1, 0, 0, 0};  // one query token, two heads, same direction
  std::vector<float> k(50 * 4, 0.0f);
  k[37 * 4] = 5.0f;                                   // token 37's key points along the query
  QueryScorer scorer(q, 1, L, ScoreConfig{});
  const std::vector<float> s = run(scorer, k, 50, 4, 16);
  EXPECT_EQ(std::max_element(s.begin(), s.end()) - s.begin(), 37);
}

}  // namespace
}  // namespace ilre::retrieval
