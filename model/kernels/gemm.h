// Dense F32 products for attention, the exact numerics' matmul and the benchmarks' peak, row-major with row
// strides: Eigen's GEBP kernels, compiled twice — for the build's baseline (gemm.cpp) and for AVX2/FMA
// (gemm_avx2.cpp, chosen at run time by avx2_kernels()) — because Eigen picks its instructions at compile
// time.
#pragma once

#include <cstdint>

namespace ilre::model::kernels {

// c[i * ldc + j] = sum_p a[i * lda + p] * b[j * ldb + p]   (C = A Bᵀ), i < m, j < n, p < k.
void gemm_abt(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
              int64_t ldc);

// c[i * ldc + j] += sum_p a[i * lda + p] * b[p * ldb + j]  (C += A B).
void gemm_ab_add(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                 float* c, int64_t ldc);

// The variants themselves, for tests and benchmarks that compare them; gemm_* above picks one.
namespace baseline {
void gemm_abt(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
              int64_t ldc);
void gemm_ab_add(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                 float* c, int64_t ldc);
}  // namespace baseline
namespace avx2 {
void gemm_abt(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
              int64_t ldc);
void gemm_ab_add(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                 float* c, int64_t ldc);
}  // namespace avx2

}  // namespace ilre::model::kernels
