// Numeric kernels behind quant.h and matmul.h: activation rounding, dot products and the register-blocked
// tiles of the matrix product. Each has a portable scalar form and, where it matters, an AVX2/FMA form
// chosen at run time (isa.h); both compute the same rounded activations and the same integer block sums.
#pragma once

#include <cstddef>
#include <cstdint>

#include "model/gguf/ggml_type.h"
#include "model/kernels/isa.h"
#include "model/kernels/quant_internal.h"

namespace ilre::model::kernels {

// Activation rounding, exactly as llama.cpp's CPU backend does it on an AVX2 machine.
// One Q8_0/Q8_1 block: stores 32 quants, returns the sum of the quants and the unrounded scale amax/127.
int quantize_block_q8(const float* x, int8_t* qs, float& d);
// One Q8_K super-block: 256 quants, 16 group sums, the f32 scale.
void quantize_superblock_q8_k(const float* x, int8_t* qs, int16_t* bsums, float& d);
void round_row_f16(const float* x, uint16_t* y, int64_t n);   // F16C, round to nearest even
void round_row_bf16(const float* x, uint16_t* y, int64_t n);  // ggml's fp32 -> bf16
void quantize_row_q8_0(const float* x, quant::BlockQ8_0* y, int64_t n);  // AVX2 quantize_row_q8_0
void quantize_row_q8_1(const float* x, quant::BlockQ8_1* y, int64_t n);  // AVX2 quantize_row_q8_1
void quantize_row_q8_k(const float* x, quant::BlockQ8_K* y, int64_t n);  // quantize_row_q8_K_ref

// ggml's vec_dot_type for a computable weight type, and the conversion of an f32 row into it.
GgmlType activation_type_of(GgmlType weight_type);
void prepare_ggml_activation(GgmlType weight_type, const float* x, uint8_t* dst, int64_t n);

// One weight row (n elements of type) . one activation row in activation_type(type) format, as one output
// of matmul_kernel(type, n, n_tok) computes it (n_tok = 1: ggml's vec_dot).
float dot_row(GgmlType type, int64_t n, int64_t n_tok, const uint8_t* w, const uint8_t* a);

// The matrix product for one weight type, split into two steps so that matmul() can quantise every
// activation row once and then run tiles in parallel:
//   prepare: f32 activation row -> the kernel's own activation layout (act_bytes(n) bytes, 64-byte multiple,
//            to be placed at 64-byte aligned addresses). It holds the same rounded values as ggml's
//            activation format, arranged for the kernel (quants contiguous, scales as f32);
//   import:  ggml's activation format -> the same layout (lossless), so vec_dot() can use the tiles;
//   tile:    y[c * ldy + r] = W[r] . A[c] for r < nr <= max_rows, c < nc <= max_cols.
// A tile computes every (r, c) with the same sequence of floating-point operations whatever nr and nc
// are, so results do not depend on how the product was split into tiles or threads, and vec_dot() agrees
// with matmul() bit for bit.
struct MatmulKernel {
  size_t (*act_bytes)(int64_t n) = nullptr;
  void (*prepare)(const float* x, uint8_t* dst, int64_t n) = nullptr;
  void (*import_ggml)(const uint8_t* ggml_act, uint8_t* dst, int64_t n) = nullptr;
  void (*tile)(int64_t n, const uint8_t* w, size_t w_stride, int nr, const uint8_t* a, size_t a_stride, int nc,
               float* y, int64_t ldy) = nullptr;
  int max_rows = 1;
  int max_cols = 1;
  // Optional, for formats whose blocks are costly to decode: pack_rows re-lays nr weight rows out once
  // (packed_row_bytes(n) bytes each, 64-byte multiple) so that packed_tile, which reads that layout and
  // otherwise behaves exactly like tile, does not decode every block again for every group of columns.
  // Optional: W[r] . A with A in ggml's activation format, the same operations as a 1x1 tile on the
  // imported row, minus the import (for float formats the import costs as much as the dot).
  float (*dot_ggml)(int64_t n, const uint8_t* w, const uint8_t* ggml_act) = nullptr;
  size_t (*packed_row_bytes)(int64_t n) = nullptr;
  void (*pack_rows)(int64_t n, const uint8_t* w, size_t w_stride, int nr, uint8_t* dst) = nullptr;
  void (*packed_tile)(int64_t n, const uint8_t* w, size_t w_stride, int nr, const uint8_t* a, size_t a_stride,
                      int nc, float* y, int64_t ldy) = nullptr;
};

// Throws Exception(unsupported) for a type without kernels.
const MatmulKernel& matmul_kernel(GgmlType type);

// The kernel for a product of n_tok activation rows of length n: for F32 and F16 weights the one that sums
// in llama.cpp's order on this CPU (float_order_kernels.cpp, ggml_cpu.h), otherwise matmul_kernel(type).
const MatmulKernel& matmul_kernel(GgmlType type, int64_t n, int64_t n_tok);

// llama.cpp's summation orders for float weights: tinyBLAS (batched, n a multiple of the width) or vec_dot.
enum class FloatOrder { tiny, vec };
FloatOrder float_order(int64_t n, int64_t n_tok, int lanes);
// F32/F16 kernels of one order and width (8 or 16 lanes); portable selects the std::fma forms, which the
// AVX2 forms equal bit for bit. nullptr for other types or widths.
const MatmulKernel* float_order_kernel(GgmlType type, FloatOrder order, int lanes, bool portable = false);

// The same sums one at a time, for code that follows ggml's order outside a matrix product (attention):
//   ggml_hsum: one register of `lanes` floats summed as tinyBLAS, _mm512_reduce_add_ps and softmax do;
//   ggml_fold_vec_dot: vec_dot's four accumulators s[0..3][0..lanes) folded and summed (s is modified);
//   ggml_vec_dot_f32: ggml_vec_dot_f32 of x and y.
float ggml_hsum(const float* v, int lanes);
float ggml_fold_vec_dot(float (*s)[16], int lanes);
float ggml_vec_dot_f32(const float* x, const float* y, int64_t n, int lanes);

// The instruction sets ilre's own quantised kernels use, chosen at start-up from cpuid (or $ILRE_KERNELS =
// avx512_vnni | avx2 | scalar, capped at what the CPU has): AVX-512 VNNI tiles for the 32-element formats,
// AVX2 for the rest, the portable scalar forms without AVX2.
enum class KernelIsa { scalar, avx2, avx512_vnni };
KernelIsa kernel_isa();
const char* kernel_isa_name(KernelIsa isa);
// The instruction set the build assumed for everything outside the dispatched kernels: "x86-64-v2" (the
// default), "native" (ILRE_NATIVE=ON) or "generic".
const char* build_baseline();

#if ILRE_AVX2_KERNELS
namespace avx2 {
// nullptr: no kernel for this type at this level (avx512_vnni falls back to the AVX2 tiles per type).
const MatmulKernel* matmul_kernel(GgmlType type, KernelIsa isa);
}
#endif

}  // namespace ilre::model::kernels
