// The model maths without rounding noise: Numerics::exact (dequantised weights, F32 activations and cache,
// exact GELU) against an independent float64 numpy forward pass (scripts/make_exact_reference.py).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "model/model.h"
#include "model/session.h"
#include "support/paths.h"

namespace ilre::model {
namespace {

void check_against_float64(const std::string& model_path, const std::string& reference, double tolerance,
                           size_t max_tokens) {
  auto model = Model::load(model_path);
  std::ifstream in(test::data_dir() + "/" + reference);
  ASSERT_TRUE(in) << reference;
  const nlohmann::json doc = nlohmann::json::parse(in);
  ComputePool pool(2);
  for (const auto& c : doc.at("cases")) {
    const auto tokens = c.at("tokens").get<std::vector<TokenId>>();
    if (tokens.size() > max_tokens) continue;
    SCOPED_TRACE(c.at("name").get<std::string>());
    Session session(*model, pool, 256, Numerics::exact);
    double max_diff = 0.0;
    const auto n = static_cast<int64_t>(tokens.size());
    session.eval_each(
        tokens,
        [&](int64_t pos, std::span<const float> logits) {
          const auto& ids = c.at("top_ids")[static_cast<size_t>(pos)];
          const auto& vals = c.at("top_logits")[static_cast<size_t>(pos)];
          for (size_t r = 0; r < ids.size(); ++r) {
            max_diff = std::max(max_diff, std::fabs(vals[r].get<double>() - logits[ids[r].get<size_t>()]));
          }
        },
        // Long prompts: every 4th position and the last 64 — positions past the sliding window included.
        [n](int64_t pos) { return n <= 600 || pos % 4 == 0 || pos >= n - 64; });
    EXPECT_LE(max_diff, tolerance) << tokens.size() << " tokens";
    std::printf("[ exact ] %-22s %5zu tokens  max |dlogit| vs float64 = %.2e\n", reference.c_str(), tokens.size(),
                max_diff);
    const auto greedy = c.at("greedy").get<std::vector<TokenId>>();
    if (!greedy.empty()) {
      GenerateOptions opt;
      opt.max_tokens = static_cast<int32_t>(greedy.size());
      opt.stop_at_eog = false;
      EXPECT_EQ(session.generate({}, opt), greedy);
    }
  }
}

TEST(ExactForward, Stories260KMatchesFloat64) {
  check_against_float64(test::data_model("stories260K-f32.gguf"), "stories260K-exact.json", 1e-4, 1 << 20);
}

TEST(ExactForward, Gemma3MatchesFloat64) {
  const auto path = test::gemma_model();
  if (!path) {
    if (std::getenv("ILRE_REQUIRE_GEMMA")) FAIL() << "Gemma 3 270M is required but was not found";
    GTEST_SKIP() << "Gemma 3 270M not fetched (scripts/fetch-model.sh)";
  }
  check_against_float64(*path, "gemma3-270m-exact.json", 5e-4, 1 << 20);
}

}  // namespace
}  // namespace ilre::model
