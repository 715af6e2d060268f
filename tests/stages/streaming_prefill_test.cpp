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

// prefill.positions = cache: the sink sits right before the window, so what a late chunk's keys are depends
// only on its last tokens' content and the sink, not on how far into the document they are. Two
// documents that share the sink and their last 208 tokens (> the receptive field of 96) but not the length
// before them give the same final keys with cache positions; with absolute positions the sink is further away
// further away in one of them (608 tokens) and the keys move.
TEST_P(StreamingPrefillTest, CachePositionsForgetHowFarIntoTheDocumentAChunkIs) {
  const int64_t S = 4, W = 40, C = 16;
  auto ending = [&](int middle) {
    std::vector<TokenId> doc = document(S);
    for (int i = 0; i < middle; ++i) doc.push_back(3 + (i * 31 + 11) % 500);
    for (int i = 0; i < 208; ++i) doc.push_back(3 + (i * 17 + 5) % 500);
    return doc;
  };
  auto last_chunk_keys = [&](PrefillPositions positions, int middle) {
    PrefillSettings st = settings(S, W, C);
    st.positions = positions;
    StreamingPrefill sp(*model_, pool_, st);
    std::vector<float> keys;
    const auto doc = ending(middle);
    EXPECT_EQ(doc.size() % C, 0u);
    sp.run(doc, keys);
    const size_t width = static_cast<size_t>(model_->hparams().n_embd_k());
    return std::vector<float>(keys.end() - static_cast<std::ptrdiff_t>(C * width), keys.end());
  };
  auto max_diff = [](const std::vector<float>& a, const std::vector<float>& b) {
    double d = 0;
    for (size_t i = 0; i < a.size(); ++i) d = std::max(d, double(std::fabs(a[i] - b[i])));
    return d;
  };
  const double cache = max_diff(last_chunk_keys(PrefillPositions::cache, 396), last_chunk_keys(PrefillPositions::cache, 1004));
  const double absolute =
      max_diff(last_chunk_keys(PrefillPositions::absolute, 396), last_chunk_keys(PrefillPositions::absolute, 1004));
  EXPECT_LT(cache, 2e-3) << "cache positions: only RoPE's rounding at other angles may differ";
  if (GetParam() == "llama") {
    EXPECT_GT(absolute, 10 * cache) << "absolute positions: the sink's distance shows (" << absolute << " vs " << cache << ")";
  } else {
    // Gemma's streamed layers slide a 128-token window: at absolute positions the sink is out of their sight
    // (so the distance cannot show), at cache positions it is back in it.
    EXPECT_GT(max_diff(last_chunk_keys(PrefillPositions::absolute, 396), last_chunk_keys(PrefillPositions::cache, 396)), 1e-2);
  }

  // Before anything is evicted both put every token at its document position.
  PrefillSettings st = settings(S, W, C);
  st.positions = PrefillPositions::cache;
  StreamingPrefill a(*model_, pool_, st), b(*model_, pool_, settings(S, W, C));
  std::vector<float> ka, kb;
  a.run(document(static_cast<int>(S + W)), ka);
  b.run(document(static_cast<int>(S + W)), kb);
  EXPECT_EQ(ka, kb);
}

TEST_P(StreamingPrefillTest, CachePositionStatesResumeExactlyAndOnlyInTheirMode) {
  PrefillSettings st = settings(4, 40, 16);
  st.positions = PrefillPositions::cache;
  const auto doc = document(300);
  StreamingPrefill whole(*model_, pool_, st);
  std::vector<float> all;
  whole.run(doc, all);
  StreamingPrefill first(*model_, pool_, st);
  std::vector<float> part;
  first.run(std::span<const TokenId>(doc).first(160), part);
  StreamingPrefill resumed(*model_, pool_, st, first.save_state());
  resumed.run(std::span<const TokenId>(doc).subspan(160), part);
  EXPECT_EQ(part, all);  // the sink's keys at 0..S-1 travel in the state: no second rounding
  EXPECT_EQ(resumed.encode_query(document(9)), whole.encode_query(document(9)));
  EXPECT_THROW(StreamingPrefill(*model_, pool_, settings(4, 40, 16), first.save_state()), Exception);
  StreamingPrefill absolute(*model_, pool_, settings(4, 40, 16));
  absolute.run(std::span<const TokenId>(doc).first(160), part);
  EXPECT_THROW(StreamingPrefill(*model_, pool_, st, absolute.save_state()), Exception);
}

INSTANTIATE_TEST_SUITE_P(Arch, StreamingPrefillTest, ::testing::Values("llama", "gemma3"));

}  // namespace
}  // namespace ilre::stages
