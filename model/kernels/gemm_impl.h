// The body of gemm.h's products, included once per instruction set: by gemm.cpp for the baseline and by
// gemm_avx2.cpp, which first renames Eigen's namespace so that none of its template instances can be
// shared with (and picked by the linker for) the baseline copy. ILRE_GEMM_NS names the variant.
#include <Eigen/Dense>

#include "model/kernels/gemm.h"

namespace ilre::model::kernels::ILRE_GEMM_NS {
namespace {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstStrided = Eigen::Map<const RowMat, 0, Eigen::OuterStride<>>;
using Strided = Eigen::Map<RowMat, 0, Eigen::OuterStride<>>;

}  // namespace

void gemm_abt(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
              int64_t ldc) {
  Strided out(c, m, n, Eigen::OuterStride<>(ldc));
  out.noalias() = ConstStrided(a, m, k, Eigen::OuterStride<>(lda)) *
                  ConstStrided(b, n, k, Eigen::OuterStride<>(ldb)).transpose();
}

void gemm_ab_add(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                 float* c, int64_t ldc) {
  Strided out(c, m, n, Eigen::OuterStride<>(ldc));
  out.noalias() += ConstStrided(a, m, k, Eigen::OuterStride<>(lda)) * ConstStrided(b, k, n, Eigen::OuterStride<>(ldb));
}

}  // namespace ilre::model::kernels::ILRE_GEMM_NS
