// What llama.cpp's CPU backend does on the CPU this process runs on, where that changes the bits of a
// result: the vector width of its float dot products and which vectorised exp() its SiLU uses.
//
// llama.cpp is compiled for the machine (or picks a CPU variant at start-up), so the same model gives
// slightly different float sums on an AVX2 and an AVX-512 machine: tinyBLAS and vec_dot accumulate in
// 8- or 16-lane registers and reduce them in a fixed tree. An F16 model multiplies F16 weights by
// F16-rounded activations, and a last-bit difference before that rounding moves a value by one F16 step,
// which later layers amplify. Following the same order is what lets llama_cpp numerics meet llama.cpp's
// logits to ~1e-6 instead of ~1e-2 on F16 models.
#pragma once

namespace ilre::model {

struct GgmlCpu {
  int float_lanes = 8;        // 16 with AVX-512F, else 8 (AVX/AVX2)
  bool exp_avx512 = false;    // SiLU through the AVX-512F+DQ exp (16 lanes), else the AVX2/FMA one (8 lanes)
  bool exp_vector = true;     // false without AVX2+FMA: llama.cpp's SSE exp is not followed, glibc expf is
};

// Read once, from cpuid, or from $ILRE_GGML_CPU (avx512 | avx2 | auto) to reproduce a llama.cpp run made on
// another machine; immutable afterwards. The kernels emulate either width on any CPU with AVX2.
const GgmlCpu& ggml_cpu();

}  // namespace ilre::model
