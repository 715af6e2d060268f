// Where x86-64-v3 code may live in a build whose baseline is x86-64-v2, and when it may run.
//
// The default build targets x86-64-v2, so one binary runs on any x86-64 machine of the last fifteen years;
// the kernels that need AVX2, FMA, F16C or BMI2 are compiled for them anyway and run only after
// avx2_kernels() has checked the CPU. They come in two forms:
//   - functions between ILRE_AVX2_BEGIN and ILRE_AVX2_END inside an ordinary file (the target pragma gives
//     them the instructions; inline functions and templates from headers keep the baseline, so nothing
//     compiled for v3 can be shared with, and picked by the linker for, baseline code);
//   - whole files named *_avx2.cpp, compiled with ILRE_AVX2_FLAGS (model/CMakeLists.txt), for code that
//     needs the ISA macros: Eigen picks its packet types from __AVX2__/__FMA__ at compile time. Those files
//     must not define a symbol that baseline code could also define (an inline function or a template
//     instance from a shared header): the test IsaSymbols lists their weak symbols and fails on any outside
//     their own namespaces.
// Inside a pragma region __AVX2__ is not defined (GCC defines the ISA macros only from the command line),
// so code there tests ILRE_AVX2_KERNELS, not __AVX2__.
#pragma once

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define ILRE_AVX2_KERNELS 1
#include <immintrin.h>
#if defined(__clang__)
#define ILRE_AVX2_BEGIN \
  _Pragma("clang attribute push(__attribute__((target(\"avx2,fma,f16c,bmi,bmi2\"))), apply_to = function)")
#define ILRE_AVX2_END _Pragma("clang attribute pop")
#else
#define ILRE_AVX2_BEGIN _Pragma("GCC push_options") _Pragma("GCC target(\"avx2,fma,f16c,bmi,bmi2\")")
#define ILRE_AVX2_END _Pragma("GCC pop_options")
#endif
// For a small loop outside the kernels that the baseline makes slow (an fma that is a libm call without FMA):
// the compiler builds a baseline and an x86-64-v3 copy and the loader picks one by cpuid (an ifunc). The
// copies must give the same bits, which -ffp-contract=off and explicit std::fma make so.
#define ILRE_CLONES_V3 __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define ILRE_AVX2_KERNELS 0
#define ILRE_CLONES_V3
#endif

namespace ilre::model::kernels {

// This CPU has AVX2, FMA, F16C, BMI1 and BMI2 (x86-64-v3's vector and bit instructions), and $ILRE_KERNELS
// does not ask for the scalar kernels. Decided once, at the first call.
bool avx2_kernels();

}  // namespace ilre::model::kernels
