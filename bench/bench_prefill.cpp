// Prefill throughput of the whole model against this machine's sgemm peak, measured in one process.
//
//   bench_prefill [--model=path.gguf] [--tokens=2048] [--chunks=256,512,1024] [--threads=1,2] [--min-time=1]
//                 [--compare=512,2048] [--decode=64]
//
// For each chunk size and thread count: a Session prefills `tokens` tokens in chunks of that size (the
// KV cache grows as in llama.cpp's batched prompt processing; logits of the last token only) and the
// table shows tokens/s, the achieved GFLOP/s of the layer weight products (2 * weights per token) and
// with attention added, and both as a fraction of Eigen's sgemm peak at the same thread count.
// Also prints 512- and 2048-token prompt times for comparison with scripts/bench_llamacpp_prefill.py.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "model/kernels/compute_pool.h"
#include "model/model.h"
#include "model/gguf/model_path.h"
#include "model/session.h"
#include "peak.h"
#include "args.h"

namespace {

using namespace ilre;

struct Options {
  std::string model;
  int64_t tokens = 2048;
  std::vector<int64_t> chunks = {256, 512, 1024};
  std::vector<int64_t> threads = {1, 2};
  std::vector<int64_t> compare_lengths = {512, 2048};
  int64_t decode = 64;          // tokens decoded one at a time after a 1,024-token prompt (0: skip)
  double min_time = 1.0;
};

using ilre::bench::parse_list;

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](const char* flag) { return a.substr(std::string(flag).size()); };
    if (a.rfind("--model=", 0) == 0) o.model = value("--model=");
    else if (a.rfind("--tokens=", 0) == 0) o.tokens = std::stoll(value("--tokens="));
    else if (a.rfind("--chunks=", 0) == 0) o.chunks = parse_list(value("--chunks="));
    else if (a.rfind("--threads=", 0) == 0) o.threads = parse_list(value("--threads="));
    else if (a.rfind("--compare=", 0) == 0) o.compare_lengths = parse_list(value("--compare="));
    else if (a.rfind("--min-time=", 0) == 0) o.min_time = std::stod(value("--min-time="));
    else if (a.rfind("--decode=", 0) == 0) o.decode = std::stoll(value("--decode="));
    else {
      std::fprintf(stderr, "unknown argument %s\n", a.c_str());
      std::exit(2);
    }
  }
  return o;
}

// Multiply-adds of the layer weight products per token (what llama.cpp's prompt processing spends its
// time on; the output projection runs for the last token only and is left out).
double layer_weight_flops_per_token(const model::Model& m) {
  double flops = 0.0;
  for (const auto& t : m.file().tensors()) {
    if (t.name.rfind("blk.", 0) == 0 && t.ne[1] > 1 && t.ne[2] == 1) flops += 2.0 * static_cast<double>(t.ne[0] * t.ne[1]);
  }
  return flops;
}

// QK^T and PV multiply-adds for prefilling n tokens causally (sliding-window layers see at most W keys).
double attention_flops(const model::HParams& hp, int64_t n) {
  double flops = 0.0;
  for (int64_t l = 0; l < hp.n_layer; ++l) {
    for (int64_t i = 0; i < n; ++i) {
      const int64_t visible = hp.is_swa(l) ? std::min<int64_t>(i + 1, hp.sliding_window) : i + 1;
      flops += 2.0 * 2.0 * static_cast<double>(hp.n_head * hp.head_dim_k * visible);
    }
  }
  return flops;
}

std::vector<model::TokenId> random_tokens(const model::Model& m, int64_t n) {
  std::mt19937 rng(3);
  std::uniform_int_distribution<model::TokenId> pick(100, static_cast<model::TokenId>(std::min<int64_t>(m.hparams().n_vocab, 30000) - 1));
  std::vector<model::TokenId> t(static_cast<size_t>(n));
  for (auto& id : t) id = pick(rng);
  t[0] = m.vocab().bos();
  return t;
}

double prefill_seconds(const model::Model& m, model::ComputePool& pool, const std::vector<model::TokenId>& tokens,
                       int64_t chunk, double min_time) {
  std::vector<float> logits;
  return ilre::bench::best_seconds(
      [&] {
        model::Session s(m, pool, chunk);
        s.eval(tokens, logits);
      },
      min_time);
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  const std::string path = model::resolve_model_path(o.model.empty() ? std::nullopt : std::optional(o.model));
  const auto m = model::Model::load(path);
  const auto& hp = m->hparams();
  std::printf("model: %s (%lld layers)\n", path.c_str(), static_cast<long long>(hp.n_layer));
  ilre::bench::print_kernels();

  std::map<int64_t, double> peak, i8peak;
  for (int64_t nt : o.threads) peak[nt] = ilre::bench::sgemm_peak(static_cast<int>(nt), 0.3);
  for (int64_t nt : o.threads) i8peak[nt] = ilre::bench::int8_peak(static_cast<int>(nt), 0.3);
  std::printf("Eigen sgemm peak GFLOP/s:");
  for (int64_t nt : o.threads) std::printf("  %lld thr %.1f", static_cast<long long>(nt), peak[nt]);
  std::printf("\nint8 dot-product peak GOP/s:");
  for (int64_t nt : o.threads) std::printf("  %lld thr %.1f", static_cast<long long>(nt), i8peak[nt]);
  std::printf("\nlayer weight ops per token and layer: %.4f GOP\n\n",
              layer_weight_flops_per_token(*m) / static_cast<double>(hp.n_layer) * 1e-9);

  const auto tokens = random_tokens(*m, o.tokens);
  const double w_flops = layer_weight_flops_per_token(*m) * static_cast<double>(o.tokens);
  const double a_flops = attention_flops(hp, o.tokens);
  std::printf("prefill of %lld tokens (%.2f GFLOP weights + %.2f GFLOP attention)\n", static_cast<long long>(o.tokens),
              w_flops * 1e-9, a_flops * 1e-9);
  // Quantised weights run int8 products (the i8 peak judges them); the attention products run in f32.
  std::printf("%6s %4s %10s %14s %7s %7s %14s %7s\n", "chunk", "thr", "tok/s", "weights GF/s", "%peak", "%i8pk", "+attn GF/s",
              "%peak");
  std::map<int64_t, std::unique_ptr<model::ComputePool>> pools;
  for (int64_t nt : o.threads) pools[nt] = std::make_unique<model::ComputePool>(static_cast<int>(nt));
  for (int64_t chunk : o.chunks) {
    for (int64_t nt : o.threads) {
      const double s = prefill_seconds(*m, *pools[nt], tokens, chunk, o.min_time);
      const double gw = w_flops / s * 1e-9, ga = (w_flops + a_flops) / s * 1e-9;
      std::printf("%6lld %4lld %10.0f %14.1f %6.0f%% %6.0f%% %14.1f %6.0f%%\n", static_cast<long long>(chunk),
                  static_cast<long long>(nt), static_cast<double>(o.tokens) / s, gw, 100.0 * gw / peak[nt],
                  i8peak[nt] > 0 ? 100.0 * gw / i8peak[nt] : 0.0, ga, 100.0 * ga / peak[nt]);
      std::fflush(stdout);
    }
  }
  std::printf("\nprompt processing, chunk 512 (compare: scripts/bench_llamacpp_prefill.py)\n");
  std::printf("%7s %4s %10s\n", "tokens", "thr", "tok/s");
  for (int64_t n : o.compare_lengths) {
    const auto t = random_tokens(*m, n);
    for (int64_t nt : o.threads) {
      const double s = prefill_seconds(*m, *pools[nt], t, 512, o.min_time);
      std::printf("%7lld %4lld %10.0f\n", static_cast<long long>(n), static_cast<long long>(nt), static_cast<double>(n) / s);
    }
  }
  if (o.decode > 0) {
    // As llama.cpp's decode: one token per forward, logits of that token, after a 1,024-token prompt.
    std::printf("\ndecode, %lld tokens one at a time after 1024 prompt tokens (compare: scripts/bench_llamacpp_prefill.py --decode)\n",
                static_cast<long long>(o.decode));
    std::printf("%4s %10s\n", "thr", "tok/s");
    const auto prompt = random_tokens(*m, 1024);
    const auto next = random_tokens(*m, o.decode + 1);
    for (int64_t nt : o.threads) {
      model::Session session(*m, *pools[nt], 512);
      std::vector<float> logits;
      double best = 1e30;
      for (int rep = 0; rep < 3; ++rep) {
        session.reset();
        session.eval(prompt, logits);
        const auto t0 = std::chrono::steady_clock::now();
        for (int64_t i = 1; i <= o.decode; ++i) session.eval(std::span(next).subspan(static_cast<size_t>(i), 1), logits);
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
      std::printf("%4lld %10.1f\n", static_cast<long long>(nt), static_cast<double>(o.decode) / best);
    }
  }
  return 0;
}
