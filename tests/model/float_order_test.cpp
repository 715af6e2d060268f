// llama.cpp's float summation orders (model/kernels/float_order_kernels.cpp, model/kernels/ggml_cpu.h): the AVX2 forms
// equal the portable std::fma forms bit for bit for every order, width, type and tile shape, the orders
// are really different sums, and ggml's vector exp stays within its error bound of exp().
// End to end, tests/model/golden_logits_test.cpp checks the same orders against llama.cpp's own logits.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "model/kernels/ops.h"
#include "model/kernels/quant.h"
#include "model/kernels/quant_kernels.h"

namespace ilre::model {
namespace {

using kernels::FloatOrder;
using kernels::MatmulKernel;

struct Data {
  std::vector<uint8_t> w;    // n_rows rows of n weights, row_bytes apart
  std::vector<uint8_t> act;  // n_cols prepared activation rows, act_bytes apart (64-byte aligned offsets)
  size_t row_bytes = 0;
  size_t act_bytes = 0;
};

Data make_data(GgmlType type, const MatmulKernel& k, int64_t n, int rows, int cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Data d;
  d.row_bytes = static_cast<size_t>(n) * (type == GgmlType::F16 ? 2 : 4);
  d.w.resize(d.row_bytes * static_cast<size_t>(rows));
  for (int r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < n; ++i) {
      const float v = normal(rng);
      uint8_t* p = d.w.data() + static_cast<size_t>(r) * d.row_bytes;
      if (type == GgmlType::F16) {
        const uint16_t h = fp32_to_fp16(v);
        std::memcpy(p + 2 * i, &h, 2);
      } else {
        std::memcpy(p + 4 * i, &v, 4);
      }
    }
  }
  d.act_bytes = k.act_bytes(n);
  d.act.resize(d.act_bytes * static_cast<size_t>(cols) + 64);
  std::vector<float> x(static_cast<size_t>(n));
  for (int c = 0; c < cols; ++c) {
    for (float& v : x) v = normal(rng);
    k.prepare(x.data(), d.act.data() + static_cast<size_t>(c) * d.act_bytes, n);
  }
  return d;
}

std::vector<float> run(const MatmulKernel& k, const Data& d, int64_t n, int rows, int cols) {
  std::vector<float> y(static_cast<size_t>(rows * cols), -1.0f);
  for (int r = 0; r < rows; r += k.max_rows) {
    for (int c = 0; c < cols; c += k.max_cols) {
      const int nr = std::min(k.max_rows, rows - r);
      const int nc = std::min(k.max_cols, cols - c);
      k.tile(n, d.w.data() + static_cast<size_t>(r) * d.row_bytes, d.row_bytes, nr,
             d.act.data() + static_cast<size_t>(c) * d.act_bytes, d.act_bytes, nc, y.data() + c * rows + r, rows);
    }
  }
  return y;
}

TEST(FloatOrder, Avx2FormsEqualPortableForms) {
  uint32_t seed = 7;
  for (GgmlType type : {GgmlType::F32, GgmlType::F16}) {
    for (int lanes : {8, 16}) {
      for (FloatOrder order : {FloatOrder::tiny, FloatOrder::vec}) {
        const MatmulKernel* fast = kernels::float_order_kernel(type, order, lanes);
        const MatmulKernel* portable = kernels::float_order_kernel(type, order, lanes, /*portable=*/true);
        ASSERT_NE(fast, nullptr);
        ASSERT_NE(portable, nullptr);
        for (int64_t n : {16, 32, 48, 64, 96, 172, 256, 640, 13, 7}) {
          if (order == FloatOrder::tiny && n % lanes != 0) continue;  // tinyBLAS takes whole vectors only
          const int rows = 7, cols = 5;  // partial tiles on both sides
          const Data d = make_data(type, *portable, n, rows, cols, seed++);
          const std::vector<float> want = run(*portable, d, n, rows, cols);
          const std::vector<float> got = run(*fast, d, n, rows, cols);
          for (size_t i = 0; i < want.size(); ++i) {
            ASSERT_EQ(std::memcmp(&got[i], &want[i], sizeof(float)), 0)
                << ggml_type_name(type) << " lanes " << lanes << " order " << static_cast<int>(order) << " n " << n
                << " output " << i << ": " << got[i] << " vs " << want[i];
          }
        }
      }
    }
  }
}

// The four sums round differently somewhere on random data: a kernel picked for the wrong order would show.
TEST(FloatOrder, OrdersAreDistinctSums) {
  const int64_t n = 256;
  const int rows = 16, cols = 16;
  std::vector<std::vector<float>> results;
  for (int lanes : {8, 16}) {
    for (FloatOrder order : {FloatOrder::tiny, FloatOrder::vec}) {
      const MatmulKernel* k = kernels::float_order_kernel(GgmlType::F32, order, lanes, true);
      results.push_back(run(*k, make_data(GgmlType::F32, *k, n, rows, cols, 99), n, rows, cols));
    }
  }
  for (size_t a = 0; a < results.size(); ++a) {
    for (size_t b = a + 1; b < results.size(); ++b) EXPECT_NE(results[a], results[b]) << a << " vs " << b;
  }
}

TEST(FloatOrder, SelectionFollowsLlamaCpp) {
  EXPECT_EQ(kernels::float_order(64, 1, 16), FloatOrder::vec);    // one row: vec_dot
  EXPECT_EQ(kernels::float_order(64, 2, 16), FloatOrder::tiny);   // a batch: tinyBLAS
  EXPECT_EQ(kernels::float_order(172, 5, 16), FloatOrder::vec);   // not a whole number of vectors
  EXPECT_EQ(kernels::float_order(40, 5, 8), FloatOrder::tiny);
  EXPECT_EQ(kernels::float_order(40, 5, 16), FloatOrder::vec);
  EXPECT_EQ(kernels::float_order_kernel(GgmlType::Q4_0, FloatOrder::vec, 16), nullptr);
  EXPECT_EQ(kernels::float_order_kernel(GgmlType::F32, FloatOrder::vec, 4), nullptr);
}

TEST(FloatOrder, VectorExpWithinItsBound) {
  for (bool avx512 : {false, true}) {
    double worst = 0.0;
    for (float x = -87.0f; x < 88.0f; x += 0.0137f) {
      const double want = std::exp(static_cast<double>(x));
      const float got = ggml_vector_expf(x, avx512);
      const double ulp = std::ldexp(1.0, std::ilogb(static_cast<float>(want)) - 23);
      worst = std::max(worst, std::fabs(got - want) / ulp);
    }
    // ggml states 1.45 ulp + 0.5 for the rounding; measured against the ulp of exp(x) this is up to 2.14.
    EXPECT_LT(worst, 2.5) << (avx512 ? "avx512" : "avx2");
    EXPECT_EQ(ggml_vector_expf(-INFINITY, avx512), 0.0f);
    EXPECT_EQ(ggml_vector_expf(-200.0f, avx512), 0.0f);
    EXPECT_EQ(ggml_vector_expf(200.0f, avx512), INFINITY);
    EXPECT_EQ(ggml_vector_expf(0.0f, avx512), 1.0f);
  }
}

}  // namespace
}  // namespace ilre::model
