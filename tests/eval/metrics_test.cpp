// Needle-token recall is computed from recalled indices (a hand-planted needle with a known recall), and
// answers are scored as RULER's string match plus a strict exact match.
#include "eval/metrics.h"

#include <gtest/gtest.h>

namespace ilre::eval {
namespace {

TEST(NeedleRecall, SevenOfTenNeedleTokens) {
  // Needle tokens [100, 110); the recalled set holds 100..106 and unrelated tokens around it.
  std::vector<int64_t> recalled{0, 1, 2, 50, 99};
  for (int64_t t = 100; t < 107; ++t) recalled.push_back(t);
  recalled.push_back(110);
  recalled.push_back(500);
  const std::vector<TokenRange> needle{{100, 110}};
  EXPECT_DOUBLE_EQ(needle_recall(recalled, needle), 0.7);
  EXPECT_EQ(needle_hits(recalled, needle), (std::vector<int64_t>{7}));
}

TEST(NeedleRecall, PoolsTokensOfAllNeedles) {
  // 4 of 4 tokens of the first needle, 0 of 6 of the second: 4 / 10, not the mean of 1 and 0.
  const std::vector<int64_t> recalled{10, 11, 12, 13, 30};
  const std::vector<TokenRange> needles{{10, 14}, {20, 26}};
  EXPECT_DOUBLE_EQ(needle_recall(recalled, needles), 0.4);
  EXPECT_EQ(needle_hits(recalled, needles), (std::vector<int64_t>{4, 0}));
  EXPECT_DOUBLE_EQ(needle_recall({}, needles), 0.0);
  EXPECT_DOUBLE_EQ(needle_recall(recalled, {}), 1.0);
}

TEST(AnswerScore, ExactContainsAndFraction) {
  AnswerScore s = score_answer(" 8438108.\nQuestion: more", {"8438108"});
  EXPECT_TRUE(s.exact);
  EXPECT_TRUE(s.contains);
  EXPECT_DOUBLE_EQ(s.score, 1.0);

  s = score_answer("The pass key is 8438108.", {"8438108"});
  EXPECT_FALSE(s.exact) << "extra words on the first line";
  EXPECT_TRUE(s.contains);

  s = score_answer(" 18438108", {"8438108"});  // RULER's substring match counts this, exact does not
  EXPECT_FALSE(s.exact);
  EXPECT_TRUE(s.contains);

  s = score_answer("1111111, 2222222 and 3333333", {"3333333", "1111111", "2222222", "4444444"});
  EXPECT_FALSE(s.exact);
  EXPECT_FALSE(s.contains);
  EXPECT_DOUBLE_EQ(s.score, 0.75);

  s = score_answer("qwert, ABCDE and zzzzz", {"ZZZZZ", "QWERT", "abcde"});
  EXPECT_TRUE(s.exact) << "order, case and the joining 'and' do not matter";
  EXPECT_DOUBLE_EQ(s.score, 1.0);

  s = score_answer("", {"1"});
  EXPECT_FALSE(s.exact);
  EXPECT_DOUBLE_EQ(s.score, 0.0);
}

}  // namespace
}  // namespace ilre::eval
