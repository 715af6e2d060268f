#include "retrieval/pooling.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "ilre/error.h"

namespace ilre::retrieval {
namespace {

SelectionConfig config(std::vector<KernelShare> kernels, int64_t budget, int64_t keep_first = 0, int64_t keep_last = 0,
                       SelectionMode mode = SelectionMode::pooled_topk) {
  // Designated fields: default-building the five-kernel list first trips GCC 12's -Wmaybe-uninitialized.
  return SelectionConfig{
      .kernels = std::move(kernels), .mode = mode, .budget = budget, .keep_first = keep_first, .keep_last = keep_last};
}

TEST(MaxPool, CentredWindowIgnoresOutOfRange) {
  const std::vector<float> s{1, 5, 2, 0, 0, 3};
  EXPECT_EQ(max_pool(s, 1), s);
  EXPECT_EQ(max_pool(s, 3), (std::vector<float>{5, 5, 5, 2, 3, 3}));
  EXPECT_EQ(max_pool(s, 5), (std::vector<float>{5, 5, 5, 5, 3, 3}));
  EXPECT_EQ(max_pool(s, 31), std::vector<float>(6, 5));
}

// Hand-worked: budget 4 with the first token always kept leaves 3, split 0.5/0.5 -> quotas 2 and 1 (the
// rounding remainder goes to the first kernel). Kernel 1 takes the raw peaks 10 and 3; kernel 3's pooled
// plateau around 10 is {9, 10, 11} and its first unselected member, 9, is taken.
TEST(Selection, TwoKernelsShareTheBudget) {
  std::vector<float> s(20, 0.0f);
  s[10] = 9;
  s[3] = 5;
  s[15] = 4;
  EXPECT_EQ(select_tokens(s, config({{1, 0.5}, {3, 0.5}}, 4, 1)), (std::vector<int64_t>{0, 3, 9, 10}));
}

// Each recalled token carries the score that won it its place: its kernel's pooled score, +inf when it is
// always kept.
TEST(Selection, RelevanceIsTheScoreThatSelectedEachToken) {
  std::vector<float> s(20, 0.0f);
  s[10] = 9;
  s[3] = 5;
  s[15] = 4;
  std::vector<float> rel;
  EXPECT_EQ(select_tokens(s, config({{1, 0.5}, {3, 0.5}}, 4, 1), &rel), (std::vector<int64_t>{0, 3, 9, 10}));
  // 0: the sink; 10 then 3 by kernel 1; 9 by kernel 3, whose window around 9 holds s[10].
  EXPECT_EQ(rel, (std::vector<float>{INFINITY, 5.0f, 9.0f, 9.0f}));
  EXPECT_EQ(select_tokens(s, config({{1, 1.0}}, 40), &rel).size(), 20u);  // the whole document fits
  EXPECT_EQ(rel, std::vector<float>(20, INFINITY));
}

TEST(Selection, WideKernelRecallsTheWholeSpanAroundAPeak) {
  std::vector<float> s(40, 0.0f);
  s[20] = 1.0f;  // one strong token inside a span
  s[5] = 0.9f;   // an isolated distractor
  EXPECT_EQ(select_tokens(s, config({{7, 1.0}}, 7)), (std::vector<int64_t>{17, 18, 19, 20, 21, 22, 23}));
  EXPECT_EQ(select_tokens(s, config({{1, 1.0}}, 2)), (std::vector<int64_t>{5, 20}));
}

TEST(Selection, ExpandCentreTakesWindowsOfTheBestRawTokens) {
  std::vector<float> s(30, 0.0f);
  s[10] = 9;
  s[3] = 8;
  s[25] = 7;
  // Centre 10 -> 9..11, centre 3 -> 2..4, then one token of centre 25's window (24).
  EXPECT_EQ(select_tokens(s, config({{3, 1.0}}, 7, 0, 0, SelectionMode::expand_center)),
            (std::vector<int64_t>{2, 3, 4, 9, 10, 11, 24}));
}

// Why qa_real gave the same answers with pooling.mode expand_center as with pooled_topk in every cell: they
// are the same selection. A token's max-pooled score is the best raw score within k/2 of it, so taking tokens
// by pooled score (ties to the earlier token) reaches them exactly when expand_center reaches the best centre
// within k/2 of them, window by window from the left. Checked on random scores, several kernels and budgets.
TEST(Selection, ExpandCentreSelectsWhatPooledTopkSelects) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<float> s(600);
    for (float& x : s) x = u(rng);
    const int64_t budget = 20 + trial % 180;
    const std::vector<KernelShare> kernels = trial % 2 ? std::vector<KernelShare>{{1, 0.2}, {3, 0.2}, {7, 0.2}, {15, 0.2}, {31, 0.2}}
                                                       : std::vector<KernelShare>{{5, 0.5}, {9, 0.5}};
    EXPECT_EQ(select_tokens(s, config(kernels, budget, 4, 2, SelectionMode::pooled_topk)),
              select_tokens(s, config(kernels, budget, 4, 2, SelectionMode::expand_center)))
        << "trial " << trial;
  }
}

TEST(Selection, ShortDocumentsAreRecalledWhole) {
  const std::vector<float> s{0.1f, 0.3f, 0.2f};
  EXPECT_EQ(select_tokens(s, config({{1, 1.0}}, 3)), (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(select_tokens(s, config({{1, 1.0}}, 10)), (std::vector<int64_t>{0, 1, 2}));
}

TEST(Selection, SinkAndTailAreAlwaysKeptWithinTheBudget) {
  std::vector<float> s(100, 0.0f);
  s[50] = 1.0f;
  EXPECT_EQ(select_tokens(s, config({{1, 1.0}}, 6, 2, 3)), (std::vector<int64_t>{0, 1, 50, 97, 98, 99}));
  // Kept tokens beyond the budget: the sink wins, then the tail, nothing from the kernels.
  EXPECT_EQ(select_tokens(s, config({{1, 1.0}}, 3, 2, 3)), (std::vector<int64_t>{0, 1, 97}));
}

TEST(Selection, TiesGoToTheEarlierToken) {
  const std::vector<float> s(10, 1.0f);
  EXPECT_EQ(select_tokens(s, config({{1, 1.0}}, 3)), (std::vector<int64_t>{0, 1, 2}));
}

TEST(Selection, BadConfigurationsAreRejected) {
  const std::vector<float> s(10, 1.0f);
  EXPECT_THROW(select_tokens(s, config({{2, 1.0}}, 3)), Exception);            // even kernel
  EXPECT_THROW(select_tokens(s, config({{1, 0.5}, {3, 0.4}}, 3)), Exception);  // shares sum to 0.9
  EXPECT_THROW(select_tokens(s, config({}, 3)), Exception);
  EXPECT_THROW(select_tokens(s, config({{1, 1.0}}, -1)), Exception);
}

TEST(Selection, NanScoresRankLowest) {
  std::vector<float> s{NAN, 0.5f, NAN, 0.1f};
  EXPECT_EQ(select_tokens(s, config({{1, 1.0}}, 2)), (std::vector<int64_t>{1, 3}));
}

// The streaming selector must reproduce the whole-array selection exactly, for any block boundaries.
TEST(StreamingSelection, EqualsWholeArraySelectionForAnyBlocks) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 60; ++trial) {
    const int n = 50 + static_cast<int>(rng() % 3000);
    std::vector<float> s(static_cast<size_t>(n));
    std::uniform_real_distribution<float> u(0.0f, 1.0f);
    for (float& x : s) x = (rng() % 4 == 0) ? std::round(u(rng) * 4) / 4 : u(rng);  // plenty of ties
    const auto mode = trial % 2 ? SelectionMode::expand_center : SelectionMode::pooled_topk;
    const SelectionConfig cfg =
        config({{1, 0.25}, {3, 0.25}, {9, 0.25}, {31, 0.25}}, 1 + static_cast<int64_t>(rng() % 200),
               static_cast<int64_t>(rng() % 8), static_cast<int64_t>(rng() % 4), mode);
    StreamingSelector stream(cfg);
    for (int i = 0; i < n;) {
      const int len = std::min(n - i, 1 + static_cast<int>(rng() % 97));
      stream.add(std::span<const float>(s.data() + i, static_cast<size_t>(len)));
      i += len;
    }
    std::vector<float> rel_stream, rel_whole;
    EXPECT_EQ(stream.finish(&rel_stream), select_tokens(s, cfg, &rel_whole)) << "trial " << trial;
    EXPECT_EQ(rel_stream, rel_whole) << "trial " << trial;
  }
}

TEST(StreamingSelection, SelectsExactlyTheBudget) {
  std::mt19937 rng(3);
  std::vector<float> s(10000);
  for (float& x : s) x = static_cast<float>(rng() % 1000);
  for (int64_t budget : {1, 17, 500, 4096}) {
    StreamingSelector stream(config({{1, 0.2}, {3, 0.2}, {7, 0.2}, {15, 0.2}, {31, 0.2}}, budget, 4));
    stream.add(s);
    EXPECT_EQ(static_cast<int64_t>(stream.finish().size()), budget);
  }
}

}  // namespace
}  // namespace ilre::retrieval
