// Matrix products of activations with (possibly quantised) weight matrices: the model's hot loop.
#pragma once

#include <cstddef>
#include <cstdint>

#include "model/kernels/compute_pool.h"
#include "model/gguf/ggml_type.h"

namespace ilre::model {

// A weight matrix as stored in GGUF: n_out rows of n_in elements each, row-major, rows row_bytes apart.
// (ggml shape [n_in, n_out]: ne[0] = n_in is the contiguous dimension.)
struct WeightMatrix {
  GgmlType type = GgmlType::F32;
  const uint8_t* data = nullptr;
  int64_t n_in = 0;
  int64_t n_out = 0;
  size_t row_bytes = 0;
};

// y[t, o] = sum_i W[o, i] * x[t, i] for t < n_tok, o < n_out.
// x: F32 [n_tok, n_in] with row stride ldx floats; y: F32 [n_tok, n_out] with row stride ldy floats.
// Rounds activations exactly as llama.cpp does for this weight type (see quant.h).
void matmul(const WeightMatrix& w, const float* x, int64_t n_tok, int64_t ldx, float* y, int64_t ldy,
            ComputePool& pool);

// Row r of W dequantised into out (n_in floats): the embedding lookup.
void weight_row(const WeightMatrix& w, int64_t r, float* out);

}  // namespace ilre::model
