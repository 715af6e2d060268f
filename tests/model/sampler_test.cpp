#include "model/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "ilre/error.h"

namespace ilre::model {
namespace {

TEST(Sampler, GreedyTakesLowestIdOnTies) {
  Sampler s({.temperature = 0.0f});
  const std::vector<float> logits{0.5f, 2.0f, -1.0f, 2.0f};
  EXPECT_EQ(s.sample(logits), 1);
}

TEST(Sampler, TopKOneIsGreedyAtAnyTemperature) {
  Sampler s({.temperature = 5.0f, .top_k = 1, .top_p = 1.0f, .seed = 7});
  const std::vector<float> logits{0.1f, 0.2f, 3.0f, 0.3f};
  for (int i = 0; i < 50; ++i) EXPECT_EQ(s.sample(logits), 2);
}

TEST(Sampler, SameSeedSameSequence) {
  const std::vector<float> logits{1.0f, 1.1f, 0.9f, 1.05f, 0.7f};
  Sampler a({.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .seed = 42});
  Sampler b({.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .seed = 42});
  Sampler c({.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .seed = 43});
  std::vector<TokenId> sa, sb, sc;
  for (int i = 0; i < 100; ++i) {
    sa.push_back(a.sample(logits));
    sb.push_back(b.sample(logits));
    sc.push_back(c.sample(logits));
  }
  EXPECT_EQ(sa, sb);
  EXPECT_NE(sa, sc);
}

TEST(Sampler, FrequenciesFollowTheSoftmax) {
  const std::vector<float> logits{0.0f, std::log(2.0f), std::log(5.0f)};  // probabilities 1/8, 2/8, 5/8
  Sampler s({.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .seed = 1});
  std::map<TokenId, int> count;
  const int n = 40000;
  for (int i = 0; i < n; ++i) ++count[s.sample(logits)];
  EXPECT_NEAR(count[0] / double(n), 1.0 / 8, 0.01);
  EXPECT_NEAR(count[1] / double(n), 2.0 / 8, 0.01);
  EXPECT_NEAR(count[2] / double(n), 5.0 / 8, 0.01);
}

TEST(Sampler, TopPCutsTheTail) {
  const std::vector<float> logits{0.0f, std::log(2.0f), std::log(5.0f)};
  Sampler s({.temperature = 1.0f, .top_k = 0, .top_p = 0.6f, .seed = 3});  // 5/8 >= 0.6: only id 2 survives
  for (int i = 0; i < 200; ++i) EXPECT_EQ(s.sample(logits), 2);
}

TEST(Sampler, RejectsInvalidParameters) {
  EXPECT_THROW(Sampler({.temperature = NAN}), Exception);
  EXPECT_THROW(Sampler({.temperature = 1.0f, .top_k = 0, .top_p = 0.0f}), Exception);
}

}  // namespace
}  // namespace ilre::model
