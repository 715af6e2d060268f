#include "model/kernels/matmul.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "ilre/error.h"
#include "model/kernels/compute_pool.h"
#include "model/gguf/gguf.h"
#include "model/kernels/quant.h"
#include "support/paths.h"

namespace ilre::model {
namespace {

// A quantised weight matrix that owns its bytes.
struct OwnedWeights {
  std::vector<uint8_t> bytes;
  WeightMatrix w;
};

OwnedWeights random_weights(GgmlType type, int64_t n_in, int64_t n_out, uint32_t seed, size_t row_padding = 0) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const size_t row = *ggml_row_bytes(type, n_in);
  OwnedWeights o;
  o.bytes.assign((row + row_padding) * static_cast<size_t>(n_out), 0xAB);
  std::vector<float> x(static_cast<size_t>(n_in));
  for (int64_t r = 0; r < n_out; ++r) {
    // Rows of different scale so that per-row mistakes cannot cancel out.
    const float scale = 0.1f + static_cast<float>(r % 7);
    for (float& v : x) v = normal(rng) * scale;
    quantize_row_reference(type, x.data(), o.bytes.data() + static_cast<size_t>(r) * (row + row_padding), n_in);
  }
  o.w = WeightMatrix{type, o.bytes.data(), n_in, n_out, row + row_padding};
  return o;
}

std::vector<float> random_activations(int64_t n_tok, int64_t ldx, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n_tok * ldx));
  for (float& v : x) v = normal(rng);
  return x;
}

// y[t, o] by quantize_activation_row + matmul_dot, one output at a time.
std::vector<float> naive(const WeightMatrix& w, const std::vector<float>& x, int64_t n_tok, int64_t ldx) {
  std::vector<float> y(static_cast<size_t>(n_tok * w.n_out));
  std::vector<uint8_t> act(activation_row_bytes(w.type, w.n_in));
  for (int64_t t = 0; t < n_tok; ++t) {
    quantize_activation_row(w.type, x.data() + t * ldx, act.data(), w.n_in);
    for (int64_t o = 0; o < w.n_out; ++o) {
      y[static_cast<size_t>(t * w.n_out + o)] =
          matmul_dot(w.type, w.n_in, n_tok, w.data + static_cast<size_t>(o) * w.row_bytes, act.data());
    }
  }
  return y;
}

constexpr float kSentinel = -12345.5f;

std::vector<float> run_matmul(const WeightMatrix& w, const std::vector<float>& x, int64_t n_tok, int64_t ldx,
                              int64_t ldy, ComputePool& pool) {
  std::vector<float> y(static_cast<size_t>(n_tok * ldy), kSentinel);
  matmul(w, x.data(), n_tok, ldx, y.data(), ldy, pool);
  return y;
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

struct Case {
  GgmlType type;
  int64_t n_in;
};

std::vector<Case> cases() {
  return {{GgmlType::F32, 64},   {GgmlType::F32, 45},   {GgmlType::F16, 96},   {GgmlType::F16, 13},
          {GgmlType::BF16, 64},  {GgmlType::BF16, 7},   {GgmlType::Q4_0, 160},
          {GgmlType::Q4_1, 96},  {GgmlType::Q5_0, 640}, {GgmlType::Q5_1, 64},  {GgmlType::Q8_0, 224},
          {GgmlType::Q2_K, 256}, {GgmlType::Q3_K, 512}, {GgmlType::Q4_K, 512}, {GgmlType::Q5_K, 256},
          {GgmlType::Q6_K, 768}, {GgmlType::IQ4_NL, 96}, {GgmlType::IQ4_XS, 512}};
}

// Every output equals the vec_dot of its row and its quantised activation, bit for bit, for shapes that
// exercise every partial register tile; the padding between rows of y stays untouched.
TEST(Matmul, MatchesVecDotOnOddShapes) {
  ComputePool pool(2);
  uint32_t seed = 1;
  for (const Case& c : cases()) {
    for (const int64_t n_tok : {1, 2, 3, 5, 17, 64, 513}) {
      if (n_tok == 513 && c.n_in > 256) continue;  // keeps the naive reference fast
      const int64_t n_out = n_tok == 513 ? 13 : 37;
      const OwnedWeights o = random_weights(c.type, c.n_in, n_out, seed++, n_tok == 3 ? 64 : 0);
      const int64_t ldx = c.n_in + 5;
      const int64_t ldy = n_out + 3;
      const std::vector<float> x = random_activations(n_tok, ldx, seed++);
      const std::vector<float> got = run_matmul(o.w, x, n_tok, ldx, ldy, pool);
      const std::vector<float> want = naive(o.w, x, n_tok, ldx);
      for (int64_t t = 0; t < n_tok; ++t) {
        for (int64_t r = 0; r < n_out; ++r) {
          const float g = got[static_cast<size_t>(t * ldy + r)];
          const float e = want[static_cast<size_t>(t * n_out + r)];
          ASSERT_TRUE(same_bits(g, e)) << ggml_type_name(c.type) << " n_tok " << n_tok << " t " << t << " row " << r
                                       << ": " << g << " vs " << e;
        }
        for (int64_t r = n_out; r < ldy; ++r) ASSERT_EQ(got[static_cast<size_t>(t * ldy + r)], kSentinel);
      }
    }
  }
}

TEST(Matmul, OneAndTwoThreadsAgreeBitwise) {
  ComputePool one(1);
  ComputePool two(2);
  uint32_t seed = 500;
  for (const Case& c : cases()) {
    for (const int64_t n_tok : {1, 7, 64}) {
      const int64_t n_out = 203;
      const OwnedWeights o = random_weights(c.type, c.n_in, n_out, seed++);
      const std::vector<float> x = random_activations(n_tok, c.n_in, seed++);
      const std::vector<float> a = run_matmul(o.w, x, n_tok, c.n_in, n_out, one);
      const std::vector<float> b = run_matmul(o.w, x, n_tok, c.n_in, n_out, two);
      ASSERT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0)
          << ggml_type_name(c.type) << " n_tok " << n_tok;
    }
  }
}

// Independent of vec_dot: the product of the dequantised weights with the dequantised activations.
TEST(Matmul, CloseToDequantisedProduct) {
  ComputePool pool(2);
  for (const Case& c : cases()) {
    const int64_t n_out = 19, n_tok = 9;
    const OwnedWeights o = random_weights(c.type, c.n_in, n_out, 900);
    const std::vector<float> x = random_activations(n_tok, c.n_in, 901);
    const std::vector<float> y = run_matmul(o.w, x, n_tok, c.n_in, n_out, pool);
    std::vector<float> wrow(static_cast<size_t>(c.n_in)), arow(static_cast<size_t>(c.n_in));
    std::vector<uint8_t> act(activation_row_bytes(c.type, c.n_in));
    for (int64_t t = 0; t < n_tok; ++t) {
      quantize_activation_row(c.type, x.data() + t * c.n_in, act.data(), c.n_in);
      dequantize_row(activation_type(c.type), act.data(), arow.data(), c.n_in);
      for (int64_t r = 0; r < n_out; ++r) {
        weight_row(o.w, r, wrow.data());
        double ref = 0.0, mag = 0.0;
        for (int64_t i = 0; i < c.n_in; ++i) {
          ref += static_cast<double>(wrow[i]) * arow[i];
          mag += std::fabs(static_cast<double>(wrow[i]) * arow[i]);
        }
        // Q4_1/Q5_1 use the activation's fp16 block sums for the min term: a looser bound.
        const bool q8_1 = activation_type(c.type) == GgmlType::Q8_1;
        EXPECT_NEAR(y[static_cast<size_t>(t * n_out + r)], ref, (q8_1 ? 2e-3 : 1e-5) * mag)
            << ggml_type_name(c.type) << " t " << t << " row " << r;
      }
    }
  }
}

TEST(Matmul, EmptyAndInvalidShapes) {
  ComputePool pool(1);
  const OwnedWeights o = random_weights(GgmlType::Q8_0, 64, 4, 3);
  std::vector<float> x(64, 1.0f), y(4, kSentinel);
  matmul(o.w, x.data(), 0, 64, y.data(), 4, pool);
  EXPECT_EQ(y[0], kSentinel);
  EXPECT_THROW(matmul(o.w, x.data(), 1, 32, y.data(), 4, pool), Exception);  // ldx < n_in
  EXPECT_THROW(matmul(o.w, x.data(), 1, 64, y.data(), 3, pool), Exception);  // ldy < n_out
  WeightMatrix bad = o.w;
  bad.n_in = 48;  // not whole blocks
  EXPECT_THROW(matmul(bad, x.data(), 1, 64, y.data(), 4, pool), Exception);
  // A type without kernels (IQ2_XXS, 256-element blocks) names itself.
  const size_t iq_row = *ggml_row_bytes(GgmlType::IQ2_XXS, 256);
  std::vector<uint8_t> iq_bytes(iq_row * 4, 0);
  const WeightMatrix iq{GgmlType::IQ2_XXS, iq_bytes.data(), 256, 4, iq_row};
  std::vector<float> x256(256, 1.0f);
  try {
    matmul(iq, x256.data(), 1, 256, y.data(), 4, pool);
    ADD_FAILURE() << "no exception";
  } catch (const Exception& e) {
    EXPECT_EQ(e.code(), errc::unsupported);
    EXPECT_NE(std::string(e.what()).find("iq2_xxs"), std::string::npos) << e.what();
  }
}

// Real Gemma weights: every matrix type of the model against a double reference on dequantised operands.
TEST(Matmul, GemmaTensorsMatchDequantisedProduct) {
  const auto model = test::gemma_model();
  if (!model) GTEST_SKIP() << "Gemma model not fetched";
  auto file = GgufFile::open(*model);
  ComputePool pool(2);
  for (const char* name : {"blk.0.attn_q.weight", "blk.0.attn_v.weight", "blk.0.attn_output.weight",
                           "blk.0.ffn_down.weight", "blk.1.ffn_down.weight"}) {
    const GgufTensor& t = file->tensor(name);
    const WeightMatrix w{t.type, t.data, t.ne[0], t.ne[1], t.row_bytes()};
    const int64_t n_tok = 6;
    const std::vector<float> x = random_activations(n_tok, w.n_in, 42);
    const std::vector<float> y = run_matmul(w, x, n_tok, w.n_in, w.n_out, pool);
    std::vector<float> wrow(static_cast<size_t>(w.n_in)), arow(static_cast<size_t>(w.n_in));
    std::vector<uint8_t> act(activation_row_bytes(w.type, w.n_in));
    for (int64_t tok = 0; tok < n_tok; ++tok) {
      quantize_activation_row(w.type, x.data() + tok * w.n_in, act.data(), w.n_in);
      dequantize_row(activation_type(w.type), act.data(), arow.data(), w.n_in);
      for (int64_t r = 0; r < w.n_out; r += 37) {
        weight_row(w, r, wrow.data());
        double ref = 0.0, mag = 0.0;
        for (int64_t i = 0; i < w.n_in; ++i) {
          ref += static_cast<double>(wrow[i]) * arow[i];
          mag += std::fabs(static_cast<double>(wrow[i]) * arow[i]);
        }
        ASSERT_NEAR(y[static_cast<size_t>(tok * w.n_out + r)], ref, 1e-5 * mag) << name << " row " << r;
      }
    }
  }
}

}  // namespace
}  // namespace ilre::model
