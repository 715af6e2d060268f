// ilre's quantised kernels for every instruction set this CPU has (model/kernels/quant_kernels.h): the AVX-512 VNNI
// tiles against the AVX2 ones on the same prepared activations, direct and packed. Both do the same
// integer block sums and then the same float operations in the same order per (row, column), so they must
// agree bit for bit: choosing the instruction set never changes a result.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "model/kernels/quant.h"
#include "model/kernels/quant_kernels.h"

namespace ilre::model {
namespace {

using kernels::KernelIsa;
using kernels::MatmulKernel;

#if ILRE_AVX2_KERNELS

// The kernels expect 64-byte aligned packed rows and activation rows, as matmul() allocates them.
uint8_t* aligned(std::vector<uint8_t>& v) {
  return reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(v.data()) + 63) / 64 * 64);
}

struct Products {
  std::vector<float> direct, packed;
};

Products run(const MatmulKernel& k, const std::vector<uint8_t>& w, size_t row, const uint8_t* act, size_t a_stride,
             int64_t n, int rows, int cols) {
  Products out;
  for (bool pack : {false, true}) {
    if (pack && k.pack_rows == nullptr) continue;
    std::vector<float>& y = pack ? out.packed : out.direct;
    y.assign(static_cast<size_t>(rows * cols), 0.0f);
    std::vector<uint8_t> packed;
    const uint8_t* wr = w.data();
    size_t stride = row;
    auto* tile = k.tile;
    if (pack) {
      stride = k.packed_row_bytes(n);
      packed.resize(stride * static_cast<size_t>(rows) + 64);
      k.pack_rows(n, w.data(), row, rows, aligned(packed));
      wr = aligned(packed);
      tile = k.packed_tile;
    }
    for (int r = 0; r < rows; r += k.max_rows) {
      for (int c = 0; c < cols; c += k.max_cols) {
        tile(n, wr + static_cast<size_t>(r) * stride, stride, std::min(k.max_rows, rows - r),
             act + static_cast<size_t>(c) * a_stride, a_stride, std::min(k.max_cols, cols - c),
             y.data() + c * rows + r, rows);
      }
    }
  }
  return out;
}

TEST(KernelIsa, Avx512VnniAgreesWithAvx2) {
  if (!kernels::avx2_kernels()) GTEST_SKIP() << "the AVX2 kernels are off (this CPU, or ILRE_KERNELS=scalar)";
  if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
      !__builtin_cpu_supports("avx512vl") || !__builtin_cpu_supports("avx512vnni")) {
    GTEST_SKIP() << "this CPU has no AVX-512 VNNI";
  }
  const GgmlType types[] = {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0,
                            GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K,
                            GgmlType::IQ4_NL, GgmlType::IQ4_XS};
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (GgmlType type : types) {
    const MatmulKernel* wide = kernels::avx2::matmul_kernel(type, KernelIsa::avx512_vnni);
    const MatmulKernel* narrow = kernels::avx2::matmul_kernel(type, KernelIsa::avx2);
    ASSERT_NE(wide, nullptr);
    ASSERT_NE(narrow, nullptr);
    const bool k_quant = ggml_type_info(type).block_size == 256;
    // An odd number of 32-element blocks exercises the 512-bit tiles' single last block.
    for (int64_t n : k_quant ? std::vector<int64_t>{256, 768} : std::vector<int64_t>{32, 96, 640}) {
      const int rows = 9, cols = 7;  // partial tiles on both sides
      const size_t row = *ggml_row_bytes(type, n);
      std::vector<uint8_t> w(row * rows);
      std::vector<float> x(static_cast<size_t>(n));
      for (int r = 0; r < rows; ++r) {
        for (float& v : x) v = normal(rng) * (0.2f + static_cast<float>(r % 3));
        quantize_row_reference(type, x.data(), w.data() + static_cast<size_t>(r) * row, n);
      }
      const size_t a_stride = narrow->act_bytes(n);
      ASSERT_EQ(a_stride, wide->act_bytes(n));
      std::vector<uint8_t> act(a_stride * cols + 64);
      std::vector<std::vector<float>> xs(cols, std::vector<float>(static_cast<size_t>(n)));
      for (int c = 0; c < cols; ++c) {
        for (float& v : xs[static_cast<size_t>(c)]) v = normal(rng);
        narrow->prepare(xs[static_cast<size_t>(c)].data(), aligned(act) + static_cast<size_t>(c) * a_stride, n);
      }
      const Products a = run(*narrow, w, row, aligned(act), a_stride, n, rows, cols);
      const Products b = run(*wide, w, row, aligned(act), a_stride, n, rows, cols);
      ASSERT_EQ(a.packed.empty(), b.packed.empty());
      for (const auto& [want, got] : {std::pair{&a.direct, &b.direct}, std::pair{&a.packed, &b.packed}}) {
        for (size_t i = 0; i < want->size(); ++i) {
          ASSERT_EQ(std::memcmp(&(*want)[i], &(*got)[i], sizeof(float)), 0)
              << ggml_type_name(type) << " n " << n << " output " << i << ": " << (*got)[i] << " vs " << (*want)[i];
        }
      }
    }
  }
}

TEST(KernelIsa, ChosenIsaIsNamed) {
  const char* name = kernels::kernel_isa_name(kernels::kernel_isa());
  EXPECT_TRUE(std::string(name) == "avx512_vnni" || std::string(name) == "avx2" || std::string(name) == "scalar");
}

#endif

}  // namespace
}  // namespace ilre::model
