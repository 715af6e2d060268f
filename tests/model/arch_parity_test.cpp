// Parity with llama.cpp on the architectures ilre reads besides Gemma 3 and Llama 2: tiny random-weight GGUFs of
// qwen2 (Q/K/V biases, tied output), qwen3 (per-head Q/K norms, key_length 32 on n_embd 64), llama with
// Llama 3 rope_freqs factors and phi3 (fused attn_qkv and gate/up, LongRoPE long factors and attention factor,
// a sliding_window key llama.cpp ignores; phi3split: separate Q/K/V, short factors, tied output), all with
// grouped-query attention (4 query heads on 2 K/V heads), made with the gguf writer, and llama.cpp's logits at
// every position for fixed token ids (one batch, one thread, F32 K/V, an AVX-512 build): tests/data/arch/,
// scripts/make_arch_fixtures.py.
// With F32 weights and an F32 cache llama_cpp numerics follows llama.cpp's order (ggml_cpu.h), so the bar
// is the 1e-4 with a wide margin; exact numerics (a different summation order) must meet it too.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
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
  const bool phi3 = hp.arch == Arch::phi3;
  EXPECT_EQ(phi3, name.starts_with("phi3"));
  EXPECT_EQ(hp.has_rope_freq_factors, name == "llama3" || phi3);
  EXPECT_EQ(hp.ffn_fused_gate_up, phi3);
  if (phi3) {
    // Which LongRoPE set was taken (long: the context exceeds original_context_length), the attention factor,
    // Q scaled instead of Q·K, no sliding window whatever the file says, and Q/K/V, gate/up as views of
    // the fused tensors rather than copies.
    const nlohmann::json& spec = ref.at("spec");
    const GgufFile& f = model->file();
    const bool long_factors = hp.n_ctx_train > spec.at("orig_ctx").get<int64_t>();
    EXPECT_EQ(long_factors, name == "phi3");
    const GgufTensor& factors = f.tensor(long_factors ? "rope_factors_long.weight" : "rope_factors_short.weight");
    ASSERT_EQ(model->rope_freq_factors().size(), static_cast<size_t>(hp.n_rot / 2));
    EXPECT_EQ(std::memcmp(model->rope_freq_factors().data(), factors.data, factors.n_bytes), 0);
    EXPECT_FLOAT_EQ(hp.rope_global.attn_factor, spec.at("attn_factor").get<float>());
    // Scaling Q·K instead of Q moves these logits by ~1e-6 only (1/sqrt(12) is inexact), below the bar: the
    // flags say which one is done.
    EXPECT_EQ(hp.kq_scale, 1.0f);
    EXPECT_EQ(hp.q_scale, 1.0f / std::sqrt(12.0f));
    EXPECT_EQ(f.get_int("phi3.attention.sliding_window").value_or(0), spec.value("sliding_window", 0));
    EXPECT_EQ(hp.sliding_window, 0);
    const LayerWeights& L = model->layer(1);
    if (spec.value("fused_qkv", false)) {
      const GgufTensor& qkv = f.tensor("blk.1.attn_qkv.weight");
      EXPECT_EQ(L.wq.data, qkv.data);
      EXPECT_EQ(L.wk.data, qkv.data + static_cast<size_t>(hp.n_embd_q()) * qkv.row_bytes());
      EXPECT_EQ(L.wv.data, qkv.data + static_cast<size_t>(hp.n_embd_q() + hp.n_embd_k()) * qkv.row_bytes());
    } else {
      EXPECT_EQ(L.wk.data, f.tensor("blk.1.attn_k.weight").data);
    }
    const GgufTensor& up = f.tensor("blk.1.ffn_up.weight");
    EXPECT_EQ(L.gate.data, up.data);
    EXPECT_EQ(L.up.data, up.data + static_cast<size_t>(hp.n_ff) * up.row_bytes());
    EXPECT_EQ(L.up.n_out, hp.n_ff);
  }
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
      std::printf("[ arch ] %-9s %-9s %3zu tokens  max |dlogit| %.2e\n", name.c_str(), mode, tokens.size(), max_diff);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Tiny, ArchParity, ::testing::Values("qwen2", "qwen3", "llama3", "phi3", "phi3split"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace ilre::model
