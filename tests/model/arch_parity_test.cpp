// Parity with llama.cpp on the architectures ilre reads besides Gemma 3 and Llama 2: tiny random-weight GGUFs of
// qwen2 (Q/K/V biases, tied output), qwen3 (per-head Q/K norms, key_length 32 on n_embd 64) and llama with
// Llama 3 rope_freqs factors, all with grouped-query attention (4 query heads on 2 K/V heads), made with the
// gguf writer, and llama.cpp's logits at every position for fixed token ids (one batch, one thread, F32 K/V,
// an AVX-512 build): tests/data/arch/, scripts/make_arch_fixtures.py.
// With F32 weights and an F32 cache llama_cpp numerics follows llama.cpp's order (ggml_cpu.h), so the bar
// is the 1e-4 with a wide margin; exact numerics (a different summation order) must meet it too.
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

class ArchParity : public ::testing::TestWithParam<const char*> {};

TEST_P(ArchParity, LogitsMatchLlamaCpp) {
  ::setenv("ILRE_GGML_CPU", "avx512", 1);  // the build the references were made with
  ASSERT_EQ(ggml_cpu().float_lanes, 16) << "run in its own process, as ctest does";
  const std::string name = GetParam();
  auto model = Model::load(test::data_dir() + "/arch/" + name + "-tiny-f32.gguf");
  const nlohmann::json ref = nlohmann::json::parse(test::read_data_file("arch/" + name + "-tiny-f32.logits.json.zst"));
  const HParams& hp = model->hparams();
  EXPECT_EQ(hp.arch_name, ref.at("arch").get<std::string>());
  EXPECT_EQ(hp.n_head, 4);
  EXPECT_EQ(hp.n_head_kv, 2);
  EXPECT_EQ(hp.qkv_bias, name == "qwen2");
  EXPECT_EQ(hp.qk_norm, name == "qwen3");
  EXPECT_EQ(hp.has_rope_freq_factors, name == "llama3");
  const int64_t n_vocab = hp.n_vocab;
  ComputePool pool(2);
  for (const auto& c : ref.at("cases")) {
    const auto tokens = c.at("tokens").get<std::vector<TokenId>>();
    const auto& expected = c.at("logits");
    for (const Numerics numerics : {Numerics::llama_cpp, Numerics::exact}) {
      Session session(*model, pool, 512, numerics, KvType::f32);
      std::vector<float> logits;
      session.eval(tokens, logits, /*all_logits=*/true);
      double max_diff = 0.0;
      for (size_t pos = 0; pos < tokens.size(); ++pos) {
        for (int64_t v = 0; v < n_vocab; ++v) {
          max_diff = std::max(max_diff, std::fabs(expected[pos][static_cast<size_t>(v)].get<double>() -
                                                  logits[pos * static_cast<size_t>(n_vocab) + static_cast<size_t>(v)]));
        }
      }
      const char* mode = numerics == Numerics::exact ? "exact" : "llama_cpp";
      EXPECT_LE(max_diff, 1e-4) << name << " " << mode << ", " << tokens.size() << " tokens";
      std::printf("[ arch ] %-7s %-9s %3zu tokens  max |dlogit| %.2e\n", name.c_str(), mode, tokens.size(), max_diff);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Tiny, ArchParity, ::testing::Values("qwen2", "qwen3", "llama3"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace ilre::model
