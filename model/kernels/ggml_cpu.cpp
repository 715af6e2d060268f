#include "model/kernels/ggml_cpu.h"

#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace ilre::model {
namespace {

GgmlCpu detected() {
  GgmlCpu c;
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f");
  c.float_lanes = avx512 ? 16 : 8;
  c.exp_avx512 = avx512 && __builtin_cpu_supports("avx512dq");
  c.exp_vector = c.exp_avx512 || (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"));
  return c;
}

}  // namespace

const GgmlCpu& ggml_cpu() {
  static const GgmlCpu cpu = [] {
    const char* env = std::getenv("ILRE_GGML_CPU");
    const std::string_view want = env ? env : "auto";
    if (want == "avx512") return GgmlCpu{16, true, true};
    if (want == "avx2") return GgmlCpu{8, false, true};
    // stderr, not spdlog: this file is also linked into the standalone fuzz targets, which have no logger.
    if (want != "auto") std::fprintf(stderr, "ILRE_GGML_CPU=%s is not avx512, avx2 or auto: using this CPU's\n", env);
    return detected();
  }();
  return cpu;
}

}  // namespace ilre::model
