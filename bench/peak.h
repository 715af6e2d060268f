// This machine's peaks, measured in the same process as the figure they judge (never bare absolute times):
// the f32 GEMM peak (Eigen sgemm on the model's matrix shapes) and the int8 dot-product peak (the
// instruction the quantised kernels are built on, register-resident, no memory traffic).
#pragma once

#include <Eigen/Dense>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "model/kernels/gemm.h"
#include "model/kernels/ggml_cpu.h"
#include "model/kernels/quant_kernels.h"

namespace ilre::bench {

// One line naming the kernels chosen for this CPU, printed beside every figure.
inline void print_kernels() {
  const model::GgmlCpu& g = model::ggml_cpu();
  std::printf("kernels: quantised %s, llama.cpp float order %d lanes, llama.cpp exp %s; build baseline %s\n",
              model::kernels::kernel_isa_name(model::kernels::kernel_isa()), g.float_lanes,
              g.exp_avx512 ? "avx512" : (g.exp_vector ? "avx2" : "libm"), model::kernels::build_baseline());
}

// Best time of repeated runs (at least 2, for at least min_time seconds in total, after one warm-up).
inline double best_seconds(const std::function<void()>& fn, double min_time) {
  fn();
  double best = 1e30, total = 0.0;
  for (int rep = 0; rep < 2 || total < min_time; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, s);
    total += s;
    if (rep > 1000) break;
  }
  return best;
}

// fn(0..n_threads-1), one per thread, the calling thread taking 0.
inline void on_threads(int n_threads, const std::function<void(int)>& fn) {
  std::vector<std::thread> workers;
  for (int i = 1; i < n_threads; ++i) workers.emplace_back(fn, i);
  fn(0);
  for (auto& t : workers) t.join();
}

inline double gemm_gflops(int64_t n_tok, int64_t n_in, int64_t n_out, double seconds) {
  return 2.0 * static_cast<double>(n_tok) * static_cast<double>(n_in) * static_cast<double>(n_out) / seconds * 1e-9;
}

// Eigen sgemm Y = X * W^T with X [n_tok, n_in], W [n_out, n_in], through model/kernels/gemm.h: the
// AVX2/FMA build of Eigen where this CPU has it, whatever the baseline the benchmark was compiled for, so
// the peak is the machine's and not the compiler flags'. Eigen parallelises only with OpenMP, so
// n_threads > 1 runs one single-threaded product per thread on a slice of the output columns.
inline double eigen_gflops(int64_t n_tok, int64_t n_in, int64_t n_out, int n_threads, double min_time) {
  using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  RowMajor x = RowMajor::Random(n_tok, n_in);
  RowMajor w = RowMajor::Random(n_out, n_in);
  RowMajor y(n_tok, n_out);
  auto part = [&](int i) {
    const int64_t begin = n_out * i / n_threads, end = n_out * (i + 1) / n_threads;
    model::kernels::gemm_abt(n_tok, end - begin, n_in, x.data(), n_in, w.data() + begin * n_in, n_in,
                             y.data() + begin, n_out);
  };
  const double s = best_seconds([&] { on_threads(n_threads, part); }, min_time);
  return gemm_gflops(n_tok, n_in, n_out, s);
}

// Shapes like Gemma 3 270M's layer products at a 512-token chunk.
inline const std::vector<std::array<int64_t, 3>>& peak_shapes() {
  static const std::vector<std::array<int64_t, 3>> shapes = {{512, 640, 2048}, {512, 2048, 640}, {512, 1024, 1024}};
  return shapes;
}

// The best Eigen sgemm GFLOP/s over peak_shapes() at n_threads.
inline double sgemm_peak(int n_threads, double min_time) {
  double peak = 0.0;
  for (const auto& s : peak_shapes()) peak = std::max(peak, eigen_gflops(s[0], s[1], s[2], n_threads, min_time));
  return peak;
}

#if defined(__x86_64__)
// u8 x s8 multiply-adds in 12 independent accumulator chains (enough to cover the instruction's latency on
// Zen 3/4/5 and recent Intel); returns a sum so the work is not optimised away. 2 ops per multiply-add.
__attribute__((target("avx512f,avx512bw,avx512vnni"))) inline int64_t int8_loop_vnni512(int64_t iters) {
  const __m512i a = _mm512_set1_epi8(1), b = _mm512_set1_epi8(3);
  __m512i acc[12];
  for (auto& x : acc) x = _mm512_setzero_si512();
  for (int64_t i = 0; i < iters; ++i) {
    for (auto& x : acc) x = _mm512_dpbusd_epi32(x, a, b);
  }
  __m512i t = acc[0];
  for (int k = 1; k < 12; ++k) t = _mm512_add_epi32(t, acc[k]);
  alignas(64) int32_t lanes[16];
  _mm512_store_si512(lanes, t);
  int64_t sum = 0;
  for (int32_t v : lanes) sum += v;
  return sum;
}
inline constexpr double kInt8OpsVnni512 = 12.0 * 64.0 * 2.0;

// AVX2's pair (vpmaddubsw then vpmaddwd against ones), as the AVX2 quantised kernels do it.
__attribute__((target("avx2,fma"))) inline int64_t int8_loop_avx2(int64_t iters) {
  __m256i a = _mm256_set1_epi8(1);
  const __m256i b = _mm256_set1_epi8(3), ones = _mm256_set1_epi16(1);
  __m256i acc[12];
  for (auto& x : acc) x = _mm256_setzero_si256();
  for (int64_t i = 0; i < iters; ++i) {
    asm volatile("" : "+x"(a));  // the products are not loop-invariant to the compiler
    for (auto& x : acc) x = _mm256_add_epi32(x, _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), ones));
  }
  __m256i t = acc[0];
  for (int k = 1; k < 12; ++k) t = _mm256_add_epi32(t, acc[k]);
  alignas(32) int32_t lanes[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), t);
  int64_t sum = 0;
  for (int32_t v : lanes) sum += v;
  return sum;
}
inline constexpr double kInt8OpsAvx2 = 12.0 * 32.0 * 2.0;
#endif

// The int8 dot-product peak in GOP/s on n_threads (one loop per thread) with the widest instruction the
// quantised kernels chose on this CPU (model::kernels::kernel_isa(), so ILRE_KERNELS caps it too);
// 0 where there is none (scalar).
inline double int8_peak(int n_threads, double min_time) {
#if defined(__x86_64__)
  const model::kernels::KernelIsa isa = model::kernels::kernel_isa();
  if (isa == model::kernels::KernelIsa::scalar) return 0.0;
  const bool vnni = isa == model::kernels::KernelIsa::avx512_vnni;
  const int64_t iters = 1 << 22;
  std::vector<int64_t> sink(static_cast<size_t>(n_threads));
  auto one = [&](int i) { sink[static_cast<size_t>(i)] = vnni ? int8_loop_vnni512(iters) : int8_loop_avx2(iters); };
  const double s = best_seconds([&] { on_threads(n_threads, one); }, min_time);
  const double ops = (vnni ? kInt8OpsVnni512 : kInt8OpsAvx2) * static_cast<double>(iters) * n_threads;
  volatile int64_t keep = sink[0];  // the loops' results are used
  (void)keep;
  return ops / s * 1e-9;
#else
  (void)n_threads;
  (void)min_time;
  return 0.0;
#endif
}

}  // namespace ilre::bench
