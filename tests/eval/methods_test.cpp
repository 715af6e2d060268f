// The selection policies of `ilre eval` on hand-made keys and queries with hand-worked expected indices,
// plus one contract matrix every registered method must pass.
#include "eval/methods.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "ilre/error.h"

namespace ilre::eval {
namespace {

// One head of width 1: the score of token j under query q is q * key[j], so keys are the logits.
struct OneDim {
  std::vector<float> keys;
  std::vector<float> queries;
  MethodInputs in(int64_t budget, int64_t sink) const {
    return MethodInputs{.n_doc = static_cast<int64_t>(keys.size()),
                        .keys = keys,
                        .queries = queries,
                        .n_query = static_cast<int64_t>(queries.size()),
                        .layout = {1, 1, 1},
                        .budget = budget,
                        .sink = sink};
  }
};

model::HParams unit_scale() {
  model::HParams hp;
  hp.kq_scale = 1.0f;
  return hp;
}

// Softmax probabilities with one query: token 4 = 8/32, tokens 10..12 = 4/32 each, the other 12 = 1/32.
// A narrow peak at 4 and a wider plateau at 10..12: kernel 1 prefers the peak, pooling the plateau.
OneDim peak_and_plateau() {
  OneDim d;
  d.keys.assign(16, 0.0f);
  d.keys[4] = std::log(8.0f);
  d.keys[10] = d.keys[11] = d.keys[12] = std::log(4.0f);
  d.queries = {1.0f};
  return d;
}

std::vector<int64_t> run(std::string_view method, const MethodInputs& in, const Config& cfg = {},
                         const MethodOptions& opt = {}) {
  return make_method(method, cfg, unit_scale(), opt)->select(in);
}

TEST(AvgPool, MatchesTorchCountIncludePad) {
  EXPECT_EQ(avg_pool(std::vector<float>{0, 0, 6, 0, 0}, 3), (std::vector<float>{0, 2, 2, 2, 0}));
  // Out-of-range positions count as zeros: the edges divide by the full kernel.
  EXPECT_EQ(avg_pool(std::vector<float>{3, 0, 0}, 3), (std::vector<float>{1, 1, 0}));
  EXPECT_EQ(avg_pool(std::vector<float>{5, 5, 5, 5, 5}, 5), (std::vector<float>{3, 4, 5, 4, 3}));
  EXPECT_EQ(avg_pool(std::vector<float>{1, 2, 3}, 1), (std::vector<float>{1, 2, 3}));
}

TEST(Streaming, KeepsSinkAndMostRecent) {
  OneDim d;
  d.keys.assign(20, 0.0f);
  d.queries = {1.0f};
  EXPECT_EQ(run("streaming", d.in(8, 3)), (std::vector<int64_t>{0, 1, 2, 15, 16, 17, 18, 19}));
  EXPECT_EQ(run("streaming", d.in(4, 0)), (std::vector<int64_t>{16, 17, 18, 19}));
  EXPECT_EQ(run("streaming", d.in(2, 5)), (std::vector<int64_t>{0, 1}));  // the sink alone exceeds the budget
  EXPECT_EQ(run("streaming", d.in(50, 3)).size(), 20u);
}

TEST(GemFilter, LastQueryTokenRawScoresSummedOverHeads) {
  // Two query heads sharing one KV head of width 2: head 0 reads channel 0, head 1 channel 1, so the
  // summed raw score of token j is key[j][0] + key[j][1]. The first query token points elsewhere and
  // must be ignored.
  std::vector<float> keys = {0, 0,  5, -4,  1, 1,  0, 3,  2, 2,  -1, 0,  0, 0,  4, 0};  // sums: 0 1 2 3 4 -1 0 4
  std::vector<float> q = {-9, 0, 0, -9,   1, 0, 0, 1};  // [2 tokens, 2 heads x 2]
  MethodInputs in{.n_doc = 8, .keys = keys, .queries = q, .n_query = 2, .layout = {2, 1, 2}, .budget = 3, .sink = 0};
  MethodOptions plain;
  plain.gemfilter_kernel = 1;
  EXPECT_EQ(run("gemfilter", in, {}, plain), (std::vector<int64_t>{3, 4, 7}));  // 4 and 4 (tie: earlier first), 3
  in.sink = 1;
  EXPECT_EQ(run("gemfilter", in, {}, plain), (std::vector<int64_t>{0, 4, 7}));
}

TEST(GemFilter, AvgPoolPrefersAWideRun) {
  // A spike of 10 at 5 against a run of 3s at 20..24: top-1 is the spike, avg-pool 5 gives the run's middle
  // 15/5 = 3 > 10/5 = 2.
  OneDim d;
  d.keys.assign(30, 0.0f);
  d.keys[5] = 10;
  for (int i = 20; i < 25; ++i) d.keys[static_cast<size_t>(i)] = 3;
  d.queries = {1.0f};
  MethodOptions opt;
  opt.gemfilter_kernel = 1;
  EXPECT_EQ(run("gemfilter", d.in(1, 0), {}, opt), (std::vector<int64_t>{5}));
  opt.gemfilter_kernel = 5;
  EXPECT_EQ(run("gemfilter", d.in(1, 0), {}, opt), (std::vector<int64_t>{22}));
}

TEST(SnapKv, SoftmaxThenAvgPoolThenTopK) {
  // Kernel 3 averages: token 11 = (4+4+4)/96 = 0.125 beats tokens 3..5 = (1+1+8)/96 = 0.104.
  const OneDim d = peak_and_plateau();
  MethodOptions opt;
  opt.snapkv_kernel = 3;
  EXPECT_EQ(run("snapkv", d.in(1, 0), {}, opt), (std::vector<int64_t>{11}));
  EXPECT_EQ(run("snapkv", d.in(3, 2), {}, opt), (std::vector<int64_t>{0, 1, 11}));
  opt.snapkv_kernel = 1;
  EXPECT_EQ(run("snapkv", d.in(1, 0), {}, opt), (std::vector<int64_t>{4}));
  EXPECT_EQ(run("snapkv", d.in(3, 2), {}, opt), (std::vector<int64_t>{0, 1, 4}));
}

TEST(Ilre, MultiKernelMaxPoolingFromTheConfig) {
  // Kernels 1 and 3 with half the budget each (4 tokens): kernel 1 takes the peak 4 and the first plateau
  // token 10; kernel 3's max-pooled peak spreads to 3 and 5, which it takes next.
  const OneDim d = peak_and_plateau();
  Config cfg;
  cfg.recall.policy = "attention";  // the pooling alone (the lexical prior has its own tests)
  cfg.pooling.kernels = {1, 3};
  cfg.pooling.shares = {0.5, 0.5};
  EXPECT_EQ(run("ilre", d.in(4, 0), cfg), (std::vector<int64_t>{3, 4, 5, 10}));
  // The ablation: one kernel (3) takes the whole budget, whatever the configured kernels.
  MethodOptions opt;
  opt.ilre_1kernel = 3;
  EXPECT_EQ(run("ilre-1kernel", d.in(4, 0), cfg, opt), (std::vector<int64_t>{3, 4, 5, 9}));
}

// A second layer's softmax mass is added to the first's: alone, layer A's peak (token 4) wins one slot;
// with a layer B that puts most of its mass on token 13, token 13 wins it.
TEST(Ilre, MoreLayersAddTheirScores) {
  const OneDim a = peak_and_plateau();
  OneDim b;
  b.keys.assign(16, 0.0f);
  b.keys[13] = std::log(64.0f);
  b.queries = {1.0f};
  Config cfg;
  cfg.recall.policy = "attention";
  cfg.pooling.kernels = {1};
  cfg.pooling.shares = {1.0};
  MethodInputs in = a.in(1, 0);
  EXPECT_EQ(run("ilre", in, cfg), (std::vector<int64_t>{4}));
  const std::vector<MethodInputs::Layer> more{{b.keys, b.queries}};
  in.more_layers = more;
  EXPECT_EQ(run("ilre", in, cfg), (std::vector<int64_t>{13}));
}

TEST(Ilre, KeepFirstFollowsTheRecallConfig) {
  const OneDim d = peak_and_plateau();
  Config cfg;
  cfg.recall.policy = "attention";
  cfg.pooling.kernels = {1};
  cfg.pooling.shares = {1.0};
  EXPECT_EQ(run("ilre", d.in(3, 2), cfg), (std::vector<int64_t>{0, 1, 4}));
  cfg.recall.keep_last = 1;  // ask's recall.keep_last applies to ilre as it does in `ilre ask`
  EXPECT_EQ(run("ilre", d.in(4, 2), cfg), (std::vector<int64_t>{0, 1, 4, 15}));
}

// Keys of width 2, one head. Partitions of 4 from token 0: [0,4) is scored against [4,8), [4,8) against
// [8,12), and [8,12) is the tail. Both references span 0..1 on each channel, so the normalised key is the
// key itself and σ = |x0 - x1| / sqrt(2): token 1 (1, 0) and token 6 (0.9, 0.1) win their partitions.
std::vector<float> lag_keys() {
  return {0.5f, 0.5f,  1, 0,  0.2f, 0.2f,  0.3f, 0.3f,    // partition 0
          0, 0,  1, 1,  0.9f, 0.1f,  0.5f, 0.5f,           // partition 1 (reference of 0)
          0, 0,  1, 1,  0, 0,  0, 0};                      // tail (reference of 1)
}

TEST(LagKv, TailAndPartitions) {
  EXPECT_EQ(lagkv_tail(12, 0, 4), 4);
  EXPECT_EQ(lagkv_tail(13, 0, 4), 5);   // the remainder joins the tail
  EXPECT_EQ(lagkv_tail(7, 0, 4), 7);    // one partition has no reference: everything after the sink is tail
  EXPECT_EQ(lagkv_tail(22, 4, 4), 6);  // 4 partitions after the sink; the last + 2 left over
  EXPECT_EQ(lagkv_tail(3, 4, 4), 0);
}

TEST(LagKv, ScoresAreRanksPerPartition) {
  const std::vector<float> keys = lag_keys();
  const std::vector<float> s = lagkv_scores(keys, 12, 1, 2, 0, 4, false);
  EXPECT_FLOAT_EQ(s[1], 0.75f);  // the top rank of partition 0
  EXPECT_FLOAT_EQ(s[6], 0.75f);
  for (int i = 8; i < 12; ++i) EXPECT_EQ(s[static_cast<size_t>(i)], 0.0f) << "tail tokens are not scored";
  const std::vector<float> raw = lagkv_scores(keys, 12, 1, 2, 0, 4, true);
  // Softmax over σ = {0, 0.7071, 0, 0} in partition 0.
  EXPECT_NEAR(raw[1], std::exp(0.70710678) / (3 + std::exp(0.70710678)), 1e-5);
  EXPECT_NEAR(raw[0] + raw[1] + raw[2] + raw[3], 1.0, 1e-5);
}

TEST(LagKv, KeepsTailThenEachPartitionsBest) {
  const std::vector<float> keys = lag_keys();
  const std::vector<float> q = {1.0f, 1.0f};
  MethodInputs in{.n_doc = 12, .keys = keys, .queries = q, .n_query = 1, .layout = {1, 1, 2}, .budget = 6, .sink = 0};
  MethodOptions opt;
  opt.lagkv_lag = 4;
  EXPECT_EQ(run("lagkv", in, {}, opt), (std::vector<int64_t>{1, 6, 8, 9, 10, 11}));
  in.budget = 5;
  opt.lagkv_cross_scoring = true;  // raw softmax: token 1 (0.403) beats token 6 (0.370)
  EXPECT_EQ(run("lagkv", in, {}, opt), (std::vector<int64_t>{1, 8, 9, 10, 11}));
}

TEST(Full, RecallsEverything) {
  OneDim d;
  d.keys.assign(10, 0.0f);
  d.queries = {1.0f};
  const auto m = make_method("full", Config{}, unit_scale(), {});
  EXPECT_TRUE(m->full_context());
  EXPECT_FALSE(m->needs_prefill());
  EXPECT_EQ(m->select(d.in(3, 1)).size(), 10u);
}

TEST(Registry, UnknownMethodAndBadOptionsAreErrors) {
  EXPECT_THROW(make_method("h2o", Config{}, unit_scale(), {}), Exception);
  MethodOptions bad;
  bad.snapkv_kernel = 4;
  EXPECT_THROW(make_method("snapkv", Config{}, unit_scale(), bad), Exception);
}

// The shared matrix: on random keys every method returns sorted, distinct, in-range indices, exactly
// min(budget, n) of them (full: n), with the sink first.
TEST(Registry, EveryMethodKeepsTheSelectionContract) {
  std::mt19937 rng(3);
  std::normal_distribution<float> g;
  const model::HParams hp = unit_scale();
  for (int64_t n : {5, 40, 300}) {
    std::vector<float> keys(static_cast<size_t>(n * 2 * 8)), q(static_cast<size_t>(3 * 4 * 8));
    for (float& x : keys) x = g(rng);
    for (float& x : q) x = g(rng);
    std::vector<int32_t> tokens(static_cast<size_t>(n));
    for (int32_t& t : tokens) t = static_cast<int32_t>(rng() % 10);
    const std::vector<int32_t> question{1, 2, 7};
    retrieval::WordMap words([](int32_t id) { return " w" + std::to_string(id); });
    MethodInputs in{.n_doc = n, .keys = keys, .queries = q, .n_query = 3, .layout = {4, 2, 8}, .budget = 24, .sink = 4,
                    .doc_tokens = tokens, .question_tokens = question, .words = &words};
    for (const std::string policy : {"attention", "hybrid"}) {
      for (const std::string& name : method_names()) {
        SCOPED_TRACE(name + " " + policy + " n=" + std::to_string(n));
        Config cfg;
        cfg.recall.policy = policy;
        const auto m = make_method(name, cfg, hp, {.lagkv_lag = 16});
        const std::vector<int64_t> idx = m->select(in);
        const int64_t want = m->full_context() ? n : std::min<int64_t>(24, n);
        ASSERT_EQ(static_cast<int64_t>(idx.size()), want);
        EXPECT_TRUE(std::is_sorted(idx.begin(), idx.end()));
        EXPECT_EQ(std::adjacent_find(idx.begin(), idx.end()), idx.end());
        EXPECT_GE(idx.front(), 0);
        EXPECT_LT(idx.back(), n);
        for (int64_t i = 0; i < std::min<int64_t>(4, n); ++i) EXPECT_EQ(idx[static_cast<size_t>(i)], i);
      }
    }
  }
}

}  // namespace
}  // namespace ilre::eval
