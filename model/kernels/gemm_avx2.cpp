// gemm.h's products with Eigen compiled for AVX2/FMA (ILRE_AVX2_FLAGS), in their own Eigen namespace.
#include "model/kernels/isa.h"

#if ILRE_AVX2_KERNELS
#if !defined(__AVX2__) || !defined(__FMA__)
#error "gemm_avx2.cpp needs ILRE_AVX2_FLAGS (model/CMakeLists.txt)"
#endif
#define Eigen ilre_eigen_avx2
#define ILRE_GEMM_NS avx2
#include "model/kernels/gemm_impl.h"
#endif
