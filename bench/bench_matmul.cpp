// Matrix-product throughput against this machine's f32 GEMM peak, for the Gemma-3-270M shapes.
//
//   bench_matmul [--ntok=1,256,512,1024] [--threads=1,2] [--min-time=0.3] [--model=path.gguf] [shape ...]
//
// Prints one table: Eigen's sgemm GFLOP/s for 512x640x2048-like shapes at 1 and 2 threads (the "peak";
// Eigen parallelises only with OpenMP, so the 2-thread peak runs two single-threaded Eigen products on
// halves of the output), then ilre::model::matmul's effective GFLOP/s (2 * n_tok * n_in * n_out / time)
// for every Gemma weight shape and the whole set of matrix products of one forward pass, each as a
// fraction of the peak at the same thread count. Weights come from the Gemma GGUF when it is present
// (models/gemma-3-270m-q4_k_m.gguf or $ILRE_GEMMA_MODEL), otherwise random weights of the same types.
#include <Eigen/Dense>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "model/kernels/compute_pool.h"
#include "model/gguf/gguf.h"
#include "model/kernels/matmul.h"
#include "model/kernels/quant.h"
#include "peak.h"
#include "args.h"

namespace {

using ilre::model::ComputePool;
using ilre::model::GgmlType;
using ilre::model::GgufFile;
using ilre::model::WeightMatrix;
using ilre::bench::best_seconds;
using ilre::bench::eigen_gflops;
using ilre::bench::gemm_gflops;

struct Options {
  std::vector<int64_t> n_toks = {1, 256, 512, 1024};
  std::vector<int> threads = {1, 2};
  double min_time = 0.3;
  std::string model;
  std::vector<std::string> filters;
};

using ilre::bench::parse_list;

Options parse(int argc, char** argv) {
  Options o;
  if (const char* env = std::getenv("ILRE_GEMMA_MODEL")) o.model = env;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--ntok=", 0) == 0) o.n_toks = parse_list(a.substr(7));
    else if (a.rfind("--threads=", 0) == 0) {
      o.threads.clear();
      for (int64_t t : parse_list(a.substr(10))) o.threads.push_back(static_cast<int>(t));
    } else if (a.rfind("--min-time=", 0) == 0) o.min_time = std::stod(a.substr(11));
    else if (a.rfind("--model=", 0) == 0) o.model = a.substr(8);
    else o.filters.push_back(a);
  }
  if (o.model.empty()) {
    const std::filesystem::path p = std::filesystem::path(__FILE__).parent_path().parent_path() / "models" / "gemma-3-270m-q4_k_m.gguf";
    if (std::filesystem::exists(p)) o.model = p.string();
  }
  return o;
}

struct Shape {
  std::string name;
  GgmlType type;
  int64_t n_in;
  int64_t n_out;
  std::string tensor;  // a Gemma tensor of this shape and type
  int per_forward;     // how many such products one forward pass of Gemma-3-270M runs
};

std::vector<Shape> gemma_shapes() {
  return {
      {"q", GgmlType::Q5_0, 640, 1024, "blk.0.attn_q.weight", 18},
      {"k", GgmlType::Q5_0, 640, 256, "blk.0.attn_k.weight", 18 + 9},  // half the layers store v as Q5_0
      {"v", GgmlType::Q8_0, 640, 256, "blk.0.attn_v.weight", 9},
      {"o", GgmlType::Q4_K, 1024, 640, "blk.0.attn_output.weight", 18},
      {"gate/up", GgmlType::Q5_0, 640, 2048, "blk.0.ffn_gate.weight", 36},
      {"down", GgmlType::Q6_K, 2048, 640, "blk.0.ffn_down.weight", 9},
      {"down", GgmlType::Q4_K, 2048, 640, "", 9},
      {"output", GgmlType::Q8_0, 640, 262144, "token_embd.weight", 1},
      // Float models (F16/F32 GGUFs) in llama.cpp's summation order; not part of the Q4_K_M forward pass.
      {"f16", GgmlType::F16, 640, 2048, "", 0},
      {"f32", GgmlType::F32, 640, 2048, "", 0},
  };
}

struct Weights {
  WeightMatrix w;
  std::vector<uint8_t> owned;
};

Weights load_weights(const Shape& s, const GgufFile* file) {
  Weights out;
  if (file) {
    for (const auto& t : file->tensors()) {
      const bool named = !s.tensor.empty() && t.name == s.tensor;
      const bool matching = s.tensor.empty() && t.type == s.type && t.ne[0] == s.n_in && t.ne[1] == s.n_out;
      if ((named || matching) && t.type == s.type) {
        out.w = WeightMatrix{t.type, t.data, t.ne[0], t.ne[1], t.row_bytes()};
        return out;
      }
    }
  }
  const size_t row = *ilre::model::ggml_row_bytes(s.type, s.n_in);
  out.owned.resize(row * static_cast<size_t>(s.n_out));
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<float> x(static_cast<size_t>(s.n_in));
  for (int64_t r = 0; r < s.n_out; ++r) {
    for (float& v : x) v = normal(rng);
    ilre::model::quantize_row_reference(s.type, x.data(), out.owned.data() + static_cast<size_t>(r) * row, s.n_in);
  }
  out.w = WeightMatrix{s.type, out.owned.data(), s.n_in, s.n_out, row};
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const Options opt = parse(argc, argv);
  std::shared_ptr<const GgufFile> file;
  if (!opt.model.empty()) file = GgufFile::open(opt.model);
  std::printf("weights: %s\n", file ? opt.model.c_str() : "random (Gemma model not found)");
  ilre::bench::print_kernels();
  std::printf("threads available: %u, Eigen %d.%d.%d%s\n\n", std::thread::hardware_concurrency(), EIGEN_WORLD_VERSION,
              EIGEN_MAJOR_VERSION, EIGEN_MINOR_VERSION,
#if defined(EIGEN_HAS_OPENMP)
              " (OpenMP)"
#else
              " (no OpenMP: multi-thread peak = one Eigen product per thread on a slice of the output)"
#endif
  );

  // Peak: the best of a few f32 GEMM shapes like the model's.
  const auto& peak_shapes = ilre::bench::peak_shapes();
  std::map<int, double> peak;
  std::printf("%-28s", "Eigen sgemm GFLOP/s");
  for (int nt : opt.threads) std::printf("  %8d thr", nt);
  std::printf("\n");
  for (const auto& ps : peak_shapes) {
    std::printf("  %4lld x %4lld x %4lld        ", static_cast<long long>(ps[0]), static_cast<long long>(ps[1]),
                static_cast<long long>(ps[2]));
    for (int nt : opt.threads) {
      const double g = eigen_gflops(ps[0], ps[1], ps[2], nt, opt.min_time);
      peak[nt] = std::max(peak[nt], g);
      std::printf("  %12.1f", g);
    }
    std::printf("\n");
  }
  std::printf("%-28s", "  peak");
  for (int nt : opt.threads) std::printf("  %12.1f", peak[nt]);
  std::printf("\n\n");

  std::printf("%-8s %-5s %13s %6s", "shape", "type", "n_in->n_out", "n_tok");
  for (int nt : opt.threads) std::printf("  %2dthr GFLOP/s  %%peak", nt);
  std::printf("\n");

  std::map<int, std::unique_ptr<ComputePool>> pools;
  for (int nt : opt.threads) pools[nt] = std::make_unique<ComputePool>(nt);
  // Forward-pass aggregate: time of every product of one forward pass (all tokens through every layer).
  std::map<std::pair<int64_t, int>, double> fwd_time, fwd_flop;

  for (const Shape& s : gemma_shapes()) {
    if (!opt.filters.empty() &&
        std::none_of(opt.filters.begin(), opt.filters.end(), [&](const std::string& f) { return s.name == f; })) {
      continue;
    }
    const Weights wts = load_weights(s, file.get());
    for (int64_t n_tok : opt.n_toks) {
      std::vector<float> x(static_cast<size_t>(n_tok * s.n_in));
      std::mt19937 rng(2);
      std::normal_distribution<float> normal(0.0f, 1.0f);
      for (float& v : x) v = normal(rng);
      std::vector<float> y(static_cast<size_t>(n_tok * s.n_out));
      std::printf("%-8s %-5s %6lld->%-6lld %6lld", s.name.c_str(), std::string(ggml_type_name(s.type)).c_str(),
                  static_cast<long long>(s.n_in), static_cast<long long>(s.n_out), static_cast<long long>(n_tok));
      for (int nt : opt.threads) {
        ComputePool& pool = *pools[nt];
        const double sec = best_seconds(
            [&] { ilre::model::matmul(wts.w, x.data(), n_tok, s.n_in, y.data(), s.n_out, pool); }, opt.min_time);
        const double g = gemm_gflops(n_tok, s.n_in, s.n_out, sec);
        std::printf("  %14.1f %5.0f%%", g, 100.0 * g / peak[nt]);
        if (s.name != "output") {
          fwd_time[{n_tok, nt}] += sec * s.per_forward;
          fwd_flop[{n_tok, nt}] += 2.0 * static_cast<double>(n_tok * s.n_in * s.n_out) * s.per_forward;
        }
      }
      std::printf("\n");
      std::fflush(stdout);
    }
  }
  if (!fwd_time.empty() && opt.filters.empty()) {
    std::printf("\nall layer products of one forward pass (18 layers, output excluded):\n");
    for (int64_t n_tok : opt.n_toks) {
      std::printf("%-8s %-5s %13s %6lld", "layers", "mixed", "", static_cast<long long>(n_tok));
      for (int nt : opt.threads) {
        const double g = fwd_flop[{n_tok, nt}] / fwd_time[{n_tok, nt}] * 1e-9;
        std::printf("  %14.1f %5.0f%%", g, 100.0 * g / peak[nt]);
      }
      std::printf("   (%.2f ms per forward at %d thr)\n", fwd_time[{n_tok, opt.threads.back()}] * 1e3, opt.threads.back());
    }
  }
  return 0;
}
