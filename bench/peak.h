// This machine's f32 GEMM peak (Eigen sgemm on the model's matrix shapes): every benchmark reports its
// throughput as a fraction of it, measured in the same process, never as bare absolute times.
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

#include "model/ggml_cpu.h"
#include "model/quant_kernels.h"

namespace ilre::bench {

// One line naming the kernels chosen for this CPU, printed beside every figure.
inline void print_kernels() {
  const model::GgmlCpu& g = model::ggml_cpu();
  std::printf("kernels: quantised %s, llama.cpp float order %d lanes, llama.cpp exp %s\n",
              model::kernels::kernel_isa_name(model::kernels::kernel_isa()), g.float_lanes,
              g.exp_avx512 ? "avx512" : (g.exp_vector ? "avx2" : "libm"));
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

inline double gemm_gflops(int64_t n_tok, int64_t n_in, int64_t n_out, double seconds) {
  return 2.0 * static_cast<double>(n_tok) * static_cast<double>(n_in) * static_cast<double>(n_out) / seconds * 1e-9;
}

// Eigen sgemm Y = X * W^T with X [n_tok, n_in], W [n_out, n_in]. Eigen parallelises only with OpenMP,
// so n_threads > 1 runs one single-threaded product per thread on a slice of the output columns.
inline double eigen_gflops(int64_t n_tok, int64_t n_in, int64_t n_out, int n_threads, double min_time) {
  using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  RowMajor x = RowMajor::Random(n_tok, n_in);
  RowMajor w = RowMajor::Random(n_out, n_in);
  RowMajor y(n_tok, n_out);
  Eigen::setNbThreads(1);
  auto part = [&](int i) {
    const int64_t begin = n_out * i / n_threads, end = n_out * (i + 1) / n_threads;
    y.middleCols(begin, end - begin).noalias() = x * w.middleRows(begin, end - begin).transpose();
  };
  const double s = best_seconds(
      [&] {
        std::vector<std::thread> workers;
        for (int i = 1; i < n_threads; ++i) workers.emplace_back(part, i);
        part(0);
        for (auto& t : workers) t.join();
      },
      min_time);
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

}  // namespace ilre::bench
