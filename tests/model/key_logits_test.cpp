// The scoring kernel over 16-bit channel-major keys: the vector form gives the scalar form's bits (both sum
// over the key's channels in order with FMA) for every shape remainder, and both agree with a double
// product of the converted keys.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "model/kernels/key_logits.h"
#include "model/kernels/quant.h"

namespace ilre::model::kernels {
namespace {

TEST(KeyLogits, VectorEqualsScalarAndDoubleForEveryRemainder) {
  std::mt19937 rng(21);
  std::normal_distribution<float> g(0.0f, 1.0f);
  for (Key16 type : {Key16::f16, Key16::bf16}) {
    for (int64_t d : {8, 37, 256}) {
      const int64_t n = 300;
      std::vector<uint16_t> keys(static_cast<size_t>(d * n));
      for (uint16_t& k : keys) k = type == Key16::f16 ? fp32_to_fp16(g(rng)) : fp32_to_bf16(g(rng));
      for (int64_t cols : {1, 5, 6, 7, 13}) {
        std::vector<float> q(static_cast<size_t>(cols * d));
        for (float& x : q) x = g(rng);
        for (auto [j0, t] : {std::pair<int64_t, int64_t>{0, 300}, {3, 1}, {17, 64}, {100, 129}, {299, 1}}) {
          const int64_t ld = t + 3;
          std::vector<float> fast(static_cast<size_t>(cols * ld), -1.0f), slow = fast;
          key_logits_16(keys.data(), n, type, j0, t, d, q.data(), cols, fast.data(), ld);
          key_logits_16_scalar(keys.data(), n, type, j0, t, d, q.data(), cols, slow.data(), ld);
          ASSERT_EQ(fast, slow) << "d " << d << " cols " << cols << " j0 " << j0 << " t " << t;
          for (int64_t c = 0; c < cols; ++c) {
            for (int64_t j = 0; j < t; ++j) {
              double want = 0;
              for (int64_t p = 0; p < d; ++p) {
                const uint16_t bits = keys[static_cast<size_t>(p * n + j0 + j)];
                want += double(q[static_cast<size_t>(c * d + p)]) * (type == Key16::f16 ? fp16_to_fp32(bits) : bf16_to_fp32(bits));
              }
              ASSERT_NEAR(fast[static_cast<size_t>(c * ld + j)], want, 1e-4 * std::sqrt(double(d)));
            }
            // Only [0, t) of each column is written.
            for (int64_t j = t; j < ld; ++j) ASSERT_EQ(fast[static_cast<size_t>(c * ld + j)], -1.0f);
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace ilre::model::kernels
