// Parity with llama.cpp on stories260K against the shared golden files (llama.cpp c392e50, Feb 2025).
//
// What must be identical: token ids and greedy continuations. Logits: the golden run used llama.cpp's F16
// KV cache, and which side of an F16 rounding boundary a value lands on depends on the SIMD summation order
// of the machine that made it; one flip moves later logits by up to ~1e-2 on this tiny model. Today's
// llama.cpp on this machine differs from the golden files by up to 2.2e-2 (F32 file) / 4.2e-2 (F16 file)
// (tests/data/stories260K-llamacpp-drift.json, scripts/measure_llamacpp_drift.py). So:
//  - the BOS-only case, where no attention mixing can amplify a flip, must meet the 1e-4 / 1e-3;
//  - every other logit must be within twice llama.cpp's own largest drift from the golden file.
// The maths itself is checked without rounding noise by exact_forward_test.cpp (1e-4 against float64).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "model/model.h"
#include "model/session.h"
#include "support/paths.h"

namespace ilre::model {
namespace {

struct GoldenCase {
  const char* file;
  float bos_tolerance;  // the bar, met where no rounding flip can be amplified
};

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in) << path;
  return nlohmann::json::parse(in);
}

class GoldenLogits : public ::testing::TestWithParam<std::tuple<GoldenCase, int>> {};

TEST_P(GoldenLogits, MatchesLlamaCpp) {
  const auto& [golden, threads] = GetParam();
  const std::string file = golden.file;
  const std::string base = file.substr(0, file.find(".logits.json"));
  auto model = Model::load(test::shared_model(base + ".gguf"));
  const nlohmann::json doc = read_json(test::shared_dir() + "/golden/" + file);
  const nlohmann::json drift = read_json(test::data_dir() + "/stories260K-llamacpp-drift.json");
  const auto per_case = drift.at("files").at(file).at("max_abs_diff_per_case").get<std::vector<double>>();
  const double llamacpp_drift = *std::max_element(per_case.begin(), per_case.end());
  const int64_t n_vocab = doc.at("n_vocab").get<int64_t>();
  ASSERT_EQ(n_vocab, model->hparams().n_vocab);
  ComputePool pool(threads);

  for (const auto& c : doc.at("cases")) {
    const std::string prompt = c.at("prompt").get<std::string>();
    SCOPED_TRACE("prompt: '" + prompt.substr(0, 40) + "'");
    const auto expected_tokens = c.at("tokens").get<std::vector<TokenId>>();
    EXPECT_EQ(model->vocab().tokenize(prompt, {.add_special = true, .parse_special = false}), expected_tokens);

    Session session(*model, pool, 128);
    std::vector<float> logits;
    session.eval(expected_tokens, logits, /*all_logits=*/true);
    const auto& expected = c.at("logits");
    ASSERT_EQ(expected.size(), expected_tokens.size());
    double max_diff = 0.0;
    for (size_t pos = 0; pos < expected.size(); ++pos) {
      for (int64_t v = 0; v < n_vocab; ++v) {
        const double d = std::fabs(expected[pos][static_cast<size_t>(v)].get<double>() - logits[pos * n_vocab + v]);
        max_diff = std::max(max_diff, d);
      }
    }
    if (expected_tokens.size() == 1) {
      EXPECT_LE(max_diff, golden.bos_tolerance);
    } else {
      EXPECT_LE(max_diff, 2.0 * llamacpp_drift);
    }
    std::printf("[ golden ] %-28s %3zu tokens  max |dlogit| %.2e  (llama.cpp today: %.2e)\n", file.c_str(),
                expected_tokens.size(), max_diff, llamacpp_drift);

    Session gen(*model, pool, 128);
    GenerateOptions opt;
    opt.max_tokens = 48;
    opt.stop_at_eog = false;
    EXPECT_EQ(gen.generate(expected_tokens, opt), c.at("greedy").get<std::vector<TokenId>>());
  }
}

INSTANTIATE_TEST_SUITE_P(Stories260K, GoldenLogits,
                         ::testing::Combine(::testing::Values(GoldenCase{"stories260K-f32.logits.json", 1e-4f},
                                                              GoldenCase{"stories260K-f16.logits.json", 1e-3f}),
                                            ::testing::Values(1, 2)));

}  // namespace
}  // namespace ilre::model
