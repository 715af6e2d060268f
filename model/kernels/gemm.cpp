#include "model/kernels/gemm.h"

#include "model/kernels/isa.h"

#define ILRE_GEMM_NS baseline
#include "model/kernels/gemm_impl.h"

namespace ilre::model::kernels {

void gemm_abt(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
              int64_t ldc) {
#if ILRE_AVX2_KERNELS
  if (avx2_kernels()) return avx2::gemm_abt(m, n, k, a, lda, b, ldb, c, ldc);
#endif
  baseline::gemm_abt(m, n, k, a, lda, b, ldb, c, ldc);
}

void gemm_ab_add(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                 float* c, int64_t ldc) {
#if ILRE_AVX2_KERNELS
  if (avx2_kernels()) return avx2::gemm_ab_add(m, n, k, a, lda, b, ldb, c, ldc);
#endif
  baseline::gemm_ab_add(m, n, k, a, lda, b, ldb, c, ldc);
}

}  // namespace ilre::model::kernels
