// Quantised tensor formats: dequantisation, activation quantisation and dot products, compatible with ggml.
//
// A matrix product with a quantised weight follows llama.cpp exactly in what it rounds: the activation row
// is first converted to the weight type's partner format (its "vec_dot_type": F16 for F16 weights, Q8_0 for
// Q4_0/Q4_1/Q5_0/Q5_1/Q8_0, Q8_K for the K-quants, ...) and the dot product is then taken between the two
// quantised rows with integer arithmetic inside a block. Doing the same rounding as llama.cpp is what makes
// our logits agree with it to ~1e-3 instead of ~1e-1.
#pragma once

#include <cstddef>
#include <cstdint>

#include "model/gguf/ggml_type.h"

namespace ilre::model {

// Activation format the kernels pair with a weight type (ggml's vec_dot_type).
GgmlType activation_type(GgmlType weight_type);

// Bytes needed to hold n activations quantised for weight_type (n a multiple of its block size).
size_t activation_row_bytes(GgmlType weight_type, int64_t n);

// src: n floats -> dst: activation_type(weight_type) format. n must be a multiple of the block size.
void quantize_activation_row(GgmlType weight_type, const float* src, void* dst, int64_t n);

// Dot product of one weight row (n elements of weight_type) with one activation row prepared by
// quantize_activation_row for the same weight_type.
float vec_dot(GgmlType weight_type, int64_t n, const void* weight_row, const void* activation_row);
// The same for one output of a matrix product over n_tok activation rows, which is what matmul() computes:
// for F32/F16 weights llama.cpp sums a batch (n_tok >= 2) in another order than one row (ggml_cpu.h).
float matmul_dot(GgmlType weight_type, int64_t n, int64_t n_tok, const void* weight_row, const void* activation_row);

// n elements of `type` at src -> n floats at dst (n a multiple of the block size).
void dequantize_row(GgmlType type, const void* src, float* dst, int64_t n);

// Reference quantisation f32 -> type (ggml's *_ref algorithms): used by tests to write quantised models and
// by tools. Supported for every computable type.
void quantize_row_reference(GgmlType type, const float* src, void* dst, int64_t n);

// Scalar conversions used across the model library.
float fp16_to_fp32(uint16_t h);
uint16_t fp32_to_fp16(float f);   // round to nearest even, as F16C
float bf16_to_fp32(uint16_t h);
// Rows of them, eight at a time with F16C: the F16 K/V cache converts whole tiles in attention.
void fp16_to_fp32_row(const uint16_t* src, float* dst, int64_t n);
void fp32_to_fp16_row(const float* src, uint16_t* dst, int64_t n);
// dst = fp16_to_fp32(fp32_to_fp16(src)) (in place allowed): the value an F16 tensor would hold.
void round_through_fp16_row(const float* src, float* dst, int64_t n);
uint16_t fp32_to_bf16(float f);   // round to nearest even, NaN kept quiet, as ggml

}  // namespace ilre::model
