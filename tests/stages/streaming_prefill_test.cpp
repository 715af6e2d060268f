#include "stages/streaming_prefill.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "ilre/error.h"

#include "support/paths.h"
#include "support/tiny_model.h"

namespace ilre::stages {
namespace {

using model::TokenId;

std::vector<TokenId> document(int n) {
  std::vector<TokenId> t{1};
  for (int i = 1; i < n; ++i) t.push_back(3 + (i * 53 + 7) % 500);
  return t;
}

// Layer-l keys of a plain full-attention forward pass over the whole document (no streaming).
std::vector<float> full_keys(const model::Model& m, model::ComputePool& pool, const std::vector<TokenId>& tokens,
                             int64_t layer) {
  const auto& hp = m.hparams();
  model::Forward f(m, pool, model::Numerics::exact);
  model::KvCache cache(hp, layer, model::KvType::f32);
  std::vector<int32_t> pos(tokens.size());
  std::iota(pos.begin(), pos.end(), 0);
  std::vector<float> h(tokens.size() * static_cast<size_t>(hp.n_embd));
  f.embed(tokens, h.data());
  f.run_layers(h.data(), pos, cache, 0, layer);
  std::vector<float> k(tokens.size() * static_cast<size_t>(hp.n_embd_k()));
  f.attention_inputs(layer, h.data(), pos, nullptr, k.data(), /*rope=*/false);
  return k;
}

class StreamingPrefillTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    test::TinyModelSpec spec;
    spec.arch = GetParam();
    spec.sliding_window = spec.arch == "gemma3" ? 128 : 0;  // wider than W below, so eviction matters
    spec.n_layer = 4;
    model_ = model::Model::load(test::write_tiny_model(test::scratch_dir("sp"), spec));
  }
  PrefillSettings settings(int64_t sink, int64_t window, int64_t chunk) {
    return {.layer = 2, .sink = sink, .window = window, .chunk = chunk, .numerics = model::Numerics::exact};
  }
  std::shared_ptr<const model::Model> model_;
  model::ComputePool pool_{2};
};

TEST_P(StreamingPrefillTest, WithoutEvictionKeysEqualAFullForwardPass) {
  const auto doc = document(200);
  StreamingPrefill sp(*model_, pool_, settings(4, 512, 37));
  std::vector<float> keys;
  sp.run(doc, keys);
  const auto want = full_keys(*model_, pool_, doc, 2);
  ASSERT_EQ(keys.size(), want.size());
  for (size_t i = 0; i < keys.size(); ++i) ASSERT_NEAR(keys[i], want[i], 1e-4) << i;
}

TEST_P(StreamingPrefillTest, EvictionBoundsTheCacheAndOnlyChangesLaterTokens) {
  const int64_t S = 4, W = 40, C = 16;
  // The cache's memory after a 400-token and a 4,000-token document is the same: it never grows with L.
  size_t peak_short = 0, peak_long = 0;
  for (int n : {400, 4000}) {
    StreamingPrefill sp(*model_, pool_, settings(S, W, C));
    std::vector<float> keys;
    const auto doc = document(n);
    for (size_t b = 0; b < doc.size(); b += 50) {
      keys.clear();
      sp.run(std::span<const TokenId>(doc).subspan(b, std::min<size_t>(50, doc.size() - b)), keys);
      EXPECT_LE(sp.cache_tokens(), S + W);
      (n == 400 ? peak_short : peak_long) = std::max(n == 400 ? peak_short : peak_long, sp.cache_bytes());
    }
  }
  EXPECT_EQ(peak_short, peak_long);

  const auto doc = document(400);
  StreamingPrefill sp(*model_, pool_, settings(S, W, C));
  std::vector<float> keys;
  sp.run(doc, keys);
  const auto& hp = model_->hparams();
  const auto want = full_keys(*model_, pool_, doc, 2);
  // Tokens of the first S + W + C positions never lost anything to eviction: identical to full attention.
  const auto width = static_cast<size_t>(hp.n_embd_k());
  for (size_t i = 0; i < static_cast<size_t>(S + W) * width; ++i) ASSERT_NEAR(keys[i], want[i], 1e-4);
  // Far tokens did lose context: their keys must differ somewhere (otherwise eviction did nothing).
  double diff = 0;
  for (size_t i = 300 * width; i < keys.size(); ++i) diff = std::max(diff, double(std::fabs(keys[i] - want[i])));
  EXPECT_GT(diff, 1e-3);
}

TEST_P(StreamingPrefillTest, SavedStateResumesExactly) {
  const auto doc = document(300);
  StreamingPrefill whole(*model_, pool_, settings(4, 40, 16));
  std::vector<float> all;
  whole.run(doc, all);

  StreamingPrefill first(*model_, pool_, settings(4, 40, 16));
  std::vector<float> part;
  first.run(std::span<const TokenId>(doc).first(160), part);  // 160 = 10 whole chunks
  const std::vector<uint8_t> state = first.save_state();
  StreamingPrefill resumed(*model_, pool_, settings(4, 40, 16), state);
  EXPECT_EQ(resumed.next_position(), 160);
  resumed.run(std::span<const TokenId>(doc).subspan(160), part);
  EXPECT_EQ(part, all);

  auto q1 = resumed.encode_query(document(9));
  auto q2 = resumed.encode_query(document(9));
  EXPECT_EQ(q1, q2);  // encoding a question leaves the document state untouched
  EXPECT_EQ(resumed.next_position(), 300);
}

TEST_P(StreamingPrefillTest, StateFromAnotherLayerIsRefused) {
  StreamingPrefill a(*model_, pool_, settings(4, 40, 16));
  std::vector<float> keys;
  a.run(document(20), keys);
  PrefillSettings other = settings(4, 40, 16);
  other.layer = 1;
  EXPECT_THROW(StreamingPrefill(*model_, pool_, other, a.save_state()), Exception);
}

INSTANTIATE_TEST_SUITE_P(Arch, StreamingPrefillTest, ::testing::Values("llama", "gemma3"));

}  // namespace
}  // namespace ilre::stages
