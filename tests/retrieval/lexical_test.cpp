// The lexical prior of recall.policy = hybrid: words normalised across spellings, coverage of the question's
// words inside the window, rarer words weighing more, and the multiplicative fusion.
#include "retrieval/lexical.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace ilre::retrieval {
namespace {

// Token ids are indices into this table of pieces.
const std::vector<std::string>& pieces() {
  static const std::vector<std::string> p{" the", " The", "\xE2\x96\x81timeout", " Timeout", " is", " 500", ".", " a",
                                          " ms", "x", " 7", " default", "(", " DEFAULT"};
  return p;
}
WordMap word_map() {
  return WordMap([](int32_t id) { return pieces()[static_cast<size_t>(id)]; });
}
constexpr int32_t kThe = 0, kThe2 = 1, kTimeout = 2, kTimeout2 = 3, kIs = 4, k500 = 5, kDot = 6, kA = 7, kMs = 8,
                  kX = 9, k7 = 10, kDefault = 11, kParen = 12, kDefault2 = 13;

TEST(Lexical, WordsIgnoreCaseSpacesAndTheWordStartMark) {
  WordMap w = word_map();
  EXPECT_EQ(w.word_of(kThe), w.word_of(kThe2));
  EXPECT_EQ(w.word_of(kTimeout), w.word_of(kTimeout2));
  EXPECT_EQ(w.word_of(kDefault), w.word_of(kDefault2));
  EXPECT_NE(w.word_of(kThe), w.word_of(kTimeout));
  EXPECT_EQ(w.word_of(kDot), -1) << "punctuation is not a word";
  EXPECT_EQ(w.word_of(kParen), -1);
  EXPECT_EQ(w.word_of(kX), -1) << "one letter is not a word";
  EXPECT_GE(w.word_of(k7), 0) << "one digit is a number";
  EXPECT_EQ(WordMap::normalise("\xE2\x96\x81" "Default"), "default");
}

// A long filler of "the is a" with the answer sentence planted once.
std::vector<int32_t> document(int64_t n, int64_t at) {
  std::vector<int32_t> doc;
  for (int64_t i = 0; i < n; ++i) doc.push_back(std::vector<int32_t>{kThe, kIs, kA}[static_cast<size_t>(i % 3)]);
  const std::vector<int32_t> sentence{kThe2, kDefault, kTimeout2, kIs, k500, kMs, kDot};
  std::copy(sentence.begin(), sentence.end(), doc.begin() + at);
  return doc;
}

TEST(Lexical, PeaksWhereEveryQuestionWordIsNear) {
  WordMap w = word_map();
  const std::vector<int32_t> doc = document(3000, 1500);
  const std::vector<int32_t> question{kThe, kDefault2, kTimeout, kIs};  // "the DEFAULT timeout is"
  const std::vector<float> s = lexical_scores(doc, question, w, {.window = 8});
  ASSERT_EQ(s.size(), doc.size());
  const auto best = std::max_element(s.begin(), s.end()) - s.begin();
  EXPECT_GE(best, 1500 - 8);
  EXPECT_LE(best, 1507 + 8);
  EXPECT_NEAR(s[1502], 1.0f, 1e-6f) << "every question word within the window";
  // Far away only the common words are near: a small share, because they occur in every passage.
  EXPECT_GT(s[100], 0.0f);
  EXPECT_LT(s[100], 0.1f * s[1502]);
  for (float v : s) {
    EXPECT_GE(v, 0.0f);
    EXPECT_LE(v, 1.0f);
  }
  // Outside the window of the rare words the score falls back to the common words' share.
  EXPECT_FLOAT_EQ(s[1500 - 9 - 3], s[100]);
}

TEST(Lexical, RareWordsWeighMoreThanCommonOnes) {
  WordMap w = word_map();
  std::vector<int32_t> doc = document(4000, 2000);
  doc[500] = k500;  // "500" twice in the document, "timeout" once: one is rarer
  const std::vector<int32_t> question{kTimeout, k500};
  const std::vector<float> s = lexical_scores(doc, question, w, {.window = 2});
  EXPECT_GT(s[2002], s[500]) << "the passage with the rarer word outranks the other";
  EXPECT_NEAR(s[2003], 1.0f, 1e-6f);  // both near position 2003
}

TEST(Lexical, NoSharedWordGivesZerosAndFusionIsMultiplicative) {
  WordMap w = word_map();
  const std::vector<int32_t> doc = document(300, 100);
  const std::vector<float> none = lexical_scores(doc, std::vector<int32_t>{k7, kDot}, w, {});
  EXPECT_TRUE(std::all_of(none.begin(), none.end(), [](float v) { return v == 0.0f; }));
  EXPECT_TRUE(lexical_scores({}, std::vector<int32_t>{kTimeout}, w, {}).empty());
  std::vector<float> scores{1.0f, 2.0f, 0.5f};
  const std::vector<float> lex{0.0f, 1.0f, 0.5f};
  fuse_lexical(scores, lex, 2.0);
  EXPECT_FLOAT_EQ(scores[0], 1.0f);
  EXPECT_NEAR(scores[1], 2.0f * std::exp(2.0f), 1e-5f);
  EXPECT_NEAR(scores[2], 0.5f * std::exp(1.0f), 1e-5f);
}

}  // namespace
}  // namespace ilre::retrieval
