// The run-time choice of instruction set (model/kernels/isa.h): the choice follows the CPU and
// $ILRE_KERNELS, the AVX2 build of the attention products agrees with the baseline build and with a double
// product, and the dispatched half-precision row conversions give the scalar definition's bits for every
// length (the vector body and the scalar tail). CTest runs this binary's kernel suites twice, the second
// time with ILRE_KERNELS=scalar (tests/CMakeLists.txt), so each variant the CPU has meets the same checks.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "model/kernels/gemm.h"
#include "model/kernels/isa.h"
#include "model/kernels/ops.h"
#include "model/kernels/quant.h"
#include "model/kernels/quant_internal.h"
#include "model/kernels/quant_kernels.h"

namespace ilre::model::kernels {
namespace {

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

std::vector<float> normal_values(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = g(rng);
  return v;
}

TEST(Isa, ChoiceFollowsCpuAndEnvironment) {
  const char* env = std::getenv("ILRE_KERNELS");
  const bool scalar_asked = env != nullptr && std::string(env) == "scalar";
#if ILRE_AVX2_KERNELS
  const bool cpu = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                   __builtin_cpu_supports("f16c") && __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2");
#else
  const bool cpu = false;
#endif
  EXPECT_EQ(avx2_kernels(), cpu && !scalar_asked);
  EXPECT_EQ(kernel_isa() == KernelIsa::scalar, !avx2_kernels());
}

// Attention's shapes: a block of queries against a tile of keys (head dimension 256 and odd sizes).
TEST(Isa, GemmVariantsAgreeWithDoubleProduct) {
  struct Shape {
    int64_t m, n, k;
  };
  for (const Shape s : {Shape{1, 1, 1}, Shape{7, 33, 256}, Shape{64, 128, 256}, Shape{5, 3, 17}}) {
    const int64_t lda = s.k + 3, ldb = s.k + 1, ldc = s.n + 2;
    const std::vector<float> a = normal_values(static_cast<size_t>(s.m * lda), 1);
    const std::vector<float> b = normal_values(static_cast<size_t>(s.n * ldb), 2);
    std::vector<float> chosen(static_cast<size_t>(s.m * ldc), -7.0f), base = chosen;
    gemm_abt(s.m, s.n, s.k, a.data(), lda, b.data(), ldb, chosen.data(), ldc);
    baseline::gemm_abt(s.m, s.n, s.k, a.data(), lda, b.data(), ldb, base.data(), ldc);
    std::vector<float> wide = base;
#if ILRE_AVX2_KERNELS
    if (avx2_kernels()) avx2::gemm_abt(s.m, s.n, s.k, a.data(), lda, b.data(), ldb, wide.data(), ldc);
#endif
    for (int64_t i = 0; i < s.m; ++i) {
      for (int64_t j = 0; j < s.n; ++j) {
        double want = 0.0, scale = 0.0;
        for (int64_t p = 0; p < s.k; ++p) {
          const double x = a[static_cast<size_t>(i * lda + p)], y = b[static_cast<size_t>(j * ldb + p)];
          want += x * y;
          scale += std::fabs(x * y);
        }
        const size_t at = static_cast<size_t>(i * ldc + j);
        ASSERT_NEAR(chosen[at], want, 1e-6 * scale + 1e-30) << s.m << "x" << s.n << "x" << s.k;
        ASSERT_NEAR(base[at], want, 1e-6 * scale + 1e-30);
        ASSERT_NEAR(wide[at], want, 1e-6 * scale + 1e-30);
      }
      // Padding between rows is never written.
      for (int64_t j = s.n; j < ldc; ++j) ASSERT_EQ(chosen[static_cast<size_t>(i * ldc + j)], -7.0f);
    }
  }
}

TEST(Isa, GemmAccumulateAddsToOutput) {
  const int64_t m = 9, n = 256, k = 70;
  const std::vector<float> a = normal_values(static_cast<size_t>(m * k), 3);
  const std::vector<float> b = normal_values(static_cast<size_t>(k * n), 4);
  std::vector<float> c = normal_values(static_cast<size_t>(m * n), 5);
  const std::vector<float> c0 = c;
  gemm_ab_add(m, n, k, a.data(), k, b.data(), n, c.data(), n);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double want = c0[static_cast<size_t>(i * n + j)], scale = std::fabs(want);
      for (int64_t p = 0; p < k; ++p) {
        const double t = double(a[static_cast<size_t>(i * k + p)]) * b[static_cast<size_t>(p * n + j)];
        want += t;
        scale += std::fabs(t);
      }
      ASSERT_NEAR(c[static_cast<size_t>(i * n + j)], want, 1e-6 * scale);
    }
  }
}

TEST(Isa, HalfRowConversionsMatchScalarDefinitionAtEveryLength) {
  std::vector<float> x = normal_values(64, 6);
  x[3] = 65504.0f;  // the largest half
  x[5] = 1e-7f;     // a subnormal half
  x[9] = 1e6f;      // overflows to infinity
  for (int64_t n = 0; n <= 40; ++n) {
    std::vector<uint16_t> h(static_cast<size_t>(n) + 1, 0xdead);
    fp32_to_fp16_row(x.data(), h.data(), n);
    std::vector<float> back(static_cast<size_t>(n) + 1, -1.0f), through = back;
    fp16_to_fp32_row(h.data(), back.data(), n);
    round_through_fp16_row(x.data(), through.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      const size_t at = static_cast<size_t>(i);
      const uint16_t want = quant::fp32_to_fp16_portable(x[at]);
      ASSERT_EQ(h[at], want) << "n " << n << " element " << i;
      ASSERT_EQ(bits_of(back[at]), bits_of(quant::fp16_to_fp32_portable(want))) << "n " << n;
      ASSERT_EQ(bits_of(through[at]), bits_of(back[at])) << "n " << n;
    }
    ASSERT_EQ(h[static_cast<size_t>(n)], 0xdead);  // nothing written past n
    ASSERT_EQ(back[static_cast<size_t>(n)], -1.0f);
  }
}

// geglu converts blocks of rows to and from half precision around ggml's GELU table; one element at a time
// (a length-1 call takes the conversions' scalar tails) must give the same bits at every length and block
// edge, written in place or not, on both sides of the +-10 cut-offs.
TEST(Isa, GegluBlocksMatchOneElementAtATime) {
  std::vector<float> x = normal_values(700, 11), g = normal_values(700, 12);
  for (size_t i = 0; i < x.size(); ++i) x[i] *= 4.0f;
  x[1] = -10.0f; x[2] = 10.0f; x[3] = -10.5f; x[4] = 12.0f; x[5] = 9.99f; x[6] = 0.0f; x[7] = -0.0f;
  for (int64_t n : {0, 1, 7, 8, 9, 255, 256, 257, 513, 700}) {
    std::vector<float> y(static_cast<size_t>(n) + 1, -1.0f), in_place(x.begin(), x.begin() + n);
    geglu(x.data(), g.data(), y.data(), n);
    geglu(in_place.data(), g.data(), in_place.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      const size_t at = static_cast<size_t>(i);
      float one = 0.0f;
      geglu(&x[at], &g[at], &one, 1);
      ASSERT_EQ(bits_of(y[at]), bits_of(one)) << "n " << n << " element " << i << " x " << x[at];
      ASSERT_EQ(bits_of(in_place[at]), bits_of(one)) << "n " << n << " element " << i;
      float exact = 0.0f;
      geglu_exact(&x[at], &g[at], &exact, 1);
      ASSERT_NEAR(one, exact, 2e-3f * (1.0f + std::fabs(x[at] * g[at]))) << "x " << x[at];  // the table is GELU
    }
    ASSERT_EQ(y[static_cast<size_t>(n)], -1.0f);  // nothing written past n
  }
}

}  // namespace
}  // namespace ilre::model::kernels
