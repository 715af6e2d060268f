// Parity with llama.cpp on stories260K against golden files made with an F32 K/V cache, one batch, one
// thread (tests/data/golden/stories260K-{f32,f16}.f32kv.logits.json.zst, copied from the project's golden set; see
// tests/data/README.md).
//
// With an F32 cache llama_cpp numerics rounds where llama.cpp rounds and also sums where it sums: float
// weights in tinyBLAS / vec_dot order, SiLU and softmax through ggml's vector exp, attention in ggml's
// kq / soft_max / kqv order (model/kernels/ggml_cpu.h). That matters for the F16 model, which multiplies F16 weights
// by F16-rounded activations: a last-bit difference before that rounding moves a value by one F16 step
// and later layers amplify it (Eigen's order gave 1.8e-2). The bars are the issue's: 1e-4 for the F32
// model, 1e-3 for the F16 one (measured on an AVX-512 machine: 5e-7 on both, the files' own rounding).
// The files were made by an AVX-512 build of llama.cpp, whose 16-lane sums differ in the last bits from an
// AVX2 build's, so these tests ask for its order (ILRE_GGML_CPU=avx512), which ilre can follow on any CPU;
// with the AVX2 order the F16 model is 8.7e-3 away, as an AVX2 llama.cpp would be. A second file made by an
// AVX2-only llama.cpp build (scripts/make_golden_avx2.py) checks that order: ilre meets it bit for bit.
// With the default F16 cache the logits move by the cache's rounding, which the same files measure:
// llama.cpp's own F16-cache run differs from them by up to 3.9e-2 / 4.1e-2 (the golden set's README).
// The maths itself is also checked without rounding by exact_forward_test.cpp (1e-4 against float64).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "model/kernels/ggml_cpu.h"
#include "model/model.h"
#include "model/session.h"
#include "support/paths.h"

namespace ilre::model {
namespace {

struct GoldenCase {
  const char* model;      // tests/data/models/<model>.gguf
  KvType kv;
  double tolerance;       // on every logit of every position of every case
  const char* cpu = "avx512";  // ILRE_GGML_CPU: the llama.cpp build the file was made with
  size_t n_cases = 6;
};

std::string golden_file(const GoldenCase& g) {
  return std::string("golden/") + g.model + ".f32kv" + (std::string(g.cpu) == "avx2" ? ".avx2" : "") +
         ".logits.json.zst";
}

std::string describe(const GoldenCase& g) {
  return std::string(g.model) + (g.kv == KvType::f32 ? " f32-kv" : " f16-kv") + " " + g.cpu;
}

class GoldenLogits : public ::testing::TestWithParam<std::tuple<GoldenCase, int>> {};

TEST_P(GoldenLogits, MatchesLlamaCpp) {
  const auto& [golden, threads] = GetParam();
  ::setenv("ILRE_GGML_CPU", golden.cpu, 1);
  ASSERT_EQ(ggml_cpu().float_lanes, std::string(golden.cpu) == "avx2" ? 8 : 16)
      << "ggml_cpu() was read before this test set ILRE_GGML_CPU: run the test in its own process, as ctest does";
  const std::string base = golden.model;
  auto model = Model::load(test::data_model(base + ".gguf"));
  const nlohmann::json doc = nlohmann::json::parse(test::read_data_file(golden_file(golden)));
  ASSERT_EQ(doc.at("kv_cache").get<std::string>(), "f32");
  const int64_t n_vocab = doc.at("n_vocab").get<int64_t>();
  ASSERT_EQ(n_vocab, model->hparams().n_vocab);
  ComputePool pool(threads);
  ASSERT_EQ(doc.at("cases").size(), golden.n_cases);

  for (const auto& c : doc.at("cases")) {
    const std::string prompt = c.at("prompt").get<std::string>();
    SCOPED_TRACE("prompt: '" + prompt.substr(0, 40) + "'");
    const auto expected_tokens = c.at("tokens").get<std::vector<TokenId>>();
    EXPECT_EQ(model->vocab().tokenize(prompt, {.add_special = true, .parse_special = false}), expected_tokens);

    // One batch, as the golden run.
    Session session(*model, pool, 512, Numerics::llama_cpp, golden.kv);
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
    EXPECT_LE(max_diff, golden.tolerance);
    std::printf("[ golden ] %-22s %d thr %3zu tokens  max |dlogit| %.2e  (bar %.0e)\n", describe(golden).c_str(),
                threads, expected_tokens.size(), max_diff, golden.tolerance);

    Session gen(*model, pool, 512, Numerics::llama_cpp, golden.kv);
    GenerateOptions opt;
    opt.max_tokens = 48;
    opt.stop_at_eog = false;
    EXPECT_EQ(gen.generate(expected_tokens, opt), c.at("greedy").get<std::vector<TokenId>>());
  }
}

std::string case_name(const ::testing::TestParamInfo<std::tuple<GoldenCase, int>>& info) {
  const auto& [g, threads] = info.param;
  std::string name = std::string(g.model).substr(std::string("stories260K-").size()) +
                     (g.kv == KvType::f32 ? "_f32kv_" : "_f16kv_") + (std::string(g.cpu) == "avx2" ? "avx2_" : "") +
                     std::to_string(threads) + "thr";
  return name;
}

INSTANTIATE_TEST_SUITE_P(Stories260K, GoldenLogits,
                         ::testing::Combine(::testing::Values(GoldenCase{"stories260K-f32", KvType::f32, 1e-4},
                                                              GoldenCase{"stories260K-f16", KvType::f32, 1e-3},
                                                              GoldenCase{"stories260K-f16", KvType::f32, 1e-5, "avx2", 5},
                                                              GoldenCase{"stories260K-f32", KvType::f16, 5e-2},
                                                              GoldenCase{"stories260K-f16", KvType::f16, 5e-2}),
                                            ::testing::Values(1, 2)),
                         case_name);

}  // namespace
}  // namespace ilre::model
