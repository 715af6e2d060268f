// Does the model still read text past its trained context? Next-token loss of a long real document, by
// position band, through the whole model with plain RoPE run past the window (llama.cpp's -c beyond
// n_ctx_train) against dual chunk attention (decode.dca). This is ChunkLlama's own measure: a model that
// cannot extrapolate loses the thread (the loss climbs) past the trained length; one that can stays flat.
//
//   build/bench/long_context_ppl --model=models/gemma-3-270m-q4_k_m.gguf
//       --doc=/usr/share/perl/5.36/pod/perlfunc.pod --tokens=49152 --dca=off,on --every=16
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "args.h"
#include "model/dca.h"
#include "model/gguf/model_path.h"
#include "model/model.h"
#include "model/session.h"
#include "peak.h"

namespace {

using namespace ilre;

struct Options {
  std::string model;
  std::string doc;
  int64_t tokens = 49152;
  int64_t every = 16;     // score every k-th position (the output projection of a 262K vocabulary is costly)
  int64_t band = 8192;    // positions per reported band
  int64_t threads = 0;
  std::vector<std::string> modes{"off", "on"};
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto value = [&](const char* key) -> const char* {
      const std::string k = std::string("--") + key + "=";
      return a.rfind(k, 0) == 0 ? argv[i] + k.size() : nullptr;
    };
    if (const char* v = value("model")) o.model = v;
    else if (const char* v = value("doc")) o.doc = v;
    else if (const char* v = value("tokens")) o.tokens = std::atoll(v);
    else if (const char* v = value("every")) o.every = std::max<int64_t>(1, std::atoll(v));
    else if (const char* v = value("band")) o.band = std::max<int64_t>(1, std::atoll(v));
    else if (const char* v = value("threads")) o.threads = std::atoll(v);
    else if (const char* v = value("dca")) {
      o.modes.clear();
      std::stringstream ss(v);
      for (std::string m; std::getline(ss, m, ',');) o.modes.push_back(m);
    } else {
      std::fprintf(stderr, "unknown argument %s\n", a.c_str());
      std::exit(2);
    }
  }
  if (o.doc.empty()) {
    std::fprintf(stderr, "usage: long_context_ppl --doc=FILE [--model=M] [--tokens=N] [--dca=off,on] [--every=K]\n");
    std::exit(2);
  }
  return o;
}

// -log p(next) from one row of logits.
double nll(std::span<const float> logits, model::TokenId next) {
  float mx = logits[0];
  for (float x : logits) mx = std::max(mx, x);
  double sum = 0.0;
  for (float x : logits) sum += std::exp(static_cast<double>(x - mx));
  return std::log(sum) + mx - logits[static_cast<size_t>(next)];
}

}  // namespace

int main(int argc, char** argv) {
  const Options opt = parse(argc, argv);
  auto m = model::Model::load(model::resolve_model_path(opt.model.empty() ? std::nullopt : std::optional(opt.model)));
  const model::HParams& hp = m->hparams();
  std::ifstream in(opt.doc, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  std::vector<model::TokenId> tokens = m->vocab().tokenize(text.str(), {.add_special = true});
  if (static_cast<int64_t>(tokens.size()) < opt.tokens) {
    std::fprintf(stderr, "%s has %zu tokens, fewer than --tokens=%lld\n", opt.doc.c_str(), tokens.size(),
                 static_cast<long long>(opt.tokens));
    return 1;
  }
  tokens.resize(static_cast<size_t>(opt.tokens));
  bench::print_kernels();
  const model::Dca dca = model::Dca::for_context(hp.n_ctx_train);
  std::printf("model %s, trained context %lld; document %s, first %lld tokens; DCA chunk %lld, local %lld\n",
              m->name().c_str(), static_cast<long long>(hp.n_ctx_train), opt.doc.c_str(),
              static_cast<long long>(opt.tokens), static_cast<long long>(dca.chunk), static_cast<long long>(dca.local));
  model::ComputePool pool(static_cast<int>(opt.threads));
  const int64_t n_bands = (opt.tokens + opt.band - 1) / opt.band;
  std::vector<std::vector<double>> mean(opt.modes.size(), std::vector<double>(static_cast<size_t>(n_bands), 0.0));
  std::vector<double> seconds(opt.modes.size(), 0.0);
  for (size_t mi = 0; mi < opt.modes.size(); ++mi) {
    model::Session s(*m, pool, 512);
    s.set_context(opt.tokens);
    if (opt.modes[mi] == "on") s.set_dca(dca);
    std::vector<double> sum(static_cast<size_t>(n_bands), 0.0), count(static_cast<size_t>(n_bands), 0.0);
    const auto t0 = std::chrono::steady_clock::now();
    s.eval_each(
        tokens,
        [&](int64_t pos, std::span<const float> logits) {
          const auto b = static_cast<size_t>(pos / opt.band);
          sum[b] += nll(logits, tokens[static_cast<size_t>(pos + 1)]);
          count[b] += 1;
        },
        [&](int64_t pos) { return pos % opt.every == 0 && pos + 1 < opt.tokens; });
    seconds[mi] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (int64_t b = 0; b < n_bands; ++b) {
      mean[mi][static_cast<size_t>(b)] = count[static_cast<size_t>(b)] > 0 ? sum[static_cast<size_t>(b)] / count[static_cast<size_t>(b)] : NAN;
    }
    std::fprintf(stderr, "dca %s: %.0f s\n", opt.modes[mi].c_str(), seconds[mi]);
  }
  std::printf("\n| positions |");
  for (const auto& mode : opt.modes) std::printf(" dca %s: loss / ppl |", mode.c_str());
  std::printf("\n|---|");
  for (size_t mi = 0; mi < opt.modes.size(); ++mi) std::printf("---:|");
  std::printf("\n");
  for (int64_t b = 0; b < n_bands; ++b) {
    const int64_t lo = b * opt.band, hi = std::min(opt.tokens, (b + 1) * opt.band);
    std::printf("| %lldK-%lldK%s |", static_cast<long long>(lo / 1024), static_cast<long long>(hi / 1024),
                lo >= hp.n_ctx_train ? " (past the window)" : "");
    for (size_t mi = 0; mi < opt.modes.size(); ++mi) {
      const double x = mean[mi][static_cast<size_t>(b)];
      std::printf(" %.3f / %.1f |", x, std::exp(x));
    }
    std::printf("\n");
  }
  std::printf("\nwall time per pass:");
  for (size_t mi = 0; mi < opt.modes.size(); ++mi) std::printf(" dca %s %.0f s", opt.modes[mi].c_str(), seconds[mi]);
  std::printf("\n");
  return 0;
}
