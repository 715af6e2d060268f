// Matrix product without activation rounding: weights dequantised to F32 panel by panel and multiplied with
// F32 activations by Eigen's GEMM. This is the "exact" numerics mode (a check on the model maths that does
// not depend on llama.cpp's rounding choices) and the reference the quantised kernels are measured against.
#pragma once

#include <cstdint>

#include "model/kernels/compute_pool.h"
#include "model/kernels/matmul.h"

namespace ilre::model {

// Same contract as matmul(): y[t, o] = sum_i W[o, i] * x[t, i].
void matmul_exact(const WeightMatrix& w, const float* x, int64_t n_tok, int64_t ldx, float* y, int64_t ldy,
                  ComputePool& pool);

}  // namespace ilre::model
