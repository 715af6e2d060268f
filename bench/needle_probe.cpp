// Question: at which layer, and with which key positions, does ILRe's scoring find a planted needle?
// One streaming pass (sink + window caches in every layer) collects every layer's pre-RoPE keys; each layer
// is then scored against the question with absolute RoPE and without positions, and the needle-token recall
// of the multi-kernel selection is printed per layer.
//
//   needle_probe [model] [haystack_tokens=8192] [budget=1024] [depth=0.5]
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <string>
#include <vector>

#include "model/model.h"
#include "model/model_path.h"
#include "model/transformer.h"
#include "retrieval/pooling.h"
#include "retrieval/scoring.h"

using namespace ilre;
using model::TokenId;

int main(int argc, char** argv) {
  const std::string path = model::resolve_model_path(argc > 1 && *argv[1] ? std::optional<std::string>(argv[1]) : std::nullopt);
  const int64_t target = argc > 2 ? std::atoll(argv[2]) : 8192;
  const int64_t budget = argc > 3 ? std::atoll(argv[3]) : 1024;
  const double depth = argc > 4 ? std::atof(argv[4]) : 0.5;
  auto m = model::Model::load(path);
  const auto& hp = m->hparams();
  const auto& vocab = m->vocab();

  const std::string noise = " The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";
  const std::string needle = " The special magic number is 7392.";
  const auto noise_ids = vocab.tokenize(noise, {.add_special = false});
  const auto needle_ids = vocab.tokenize(needle, {.add_special = false});
  std::vector<TokenId> doc{vocab.bos()};
  int64_t needle_at = -1;
  while (static_cast<int64_t>(doc.size()) < target) {
    if (needle_at < 0 && static_cast<double>(doc.size()) >= depth * static_cast<double>(target)) {
      needle_at = static_cast<int64_t>(doc.size());
      doc.insert(doc.end(), needle_ids.begin(), needle_ids.end());
    }
    doc.insert(doc.end(), noise_ids.begin(), noise_ids.end());
  }
  const auto query = vocab.tokenize("\n\nQuestion: What is the special magic number?\nAnswer: The special magic number is",
                                    {.add_special = false});

  model::ComputePool pool(0);
  model::Forward f(*m, pool);
  const int64_t S = 64, W = 1024, C = 512;
  model::KvCache cache(hp, hp.n_layer);
  std::vector<std::vector<float>> keys(static_cast<size_t>(hp.n_layer));
  std::vector<float> h, k;
  std::vector<int32_t> pos;
  auto forward_layers = [&](std::span<const TokenId> toks, int64_t first, model::KvCache& c,
                            std::vector<std::vector<float>>* k_out, std::vector<std::vector<float>>* q_out) {
    const auto n = static_cast<int64_t>(toks.size());
    pos.resize(static_cast<size_t>(n));
    std::iota(pos.begin(), pos.end(), static_cast<int32_t>(first));
    h.resize(static_cast<size_t>(n * hp.n_embd));
    f.embed(toks, h.data());
    for (int64_t l = 0; l < hp.n_layer; ++l) {
      if (k_out) {
        auto& kk = (*k_out)[static_cast<size_t>(l)];
        const size_t at = kk.size();
        kk.resize(at + static_cast<size_t>(n * hp.n_embd_k()));
        f.attention_inputs(l, h.data(), pos, nullptr, kk.data() + at, false);
      }
      if (q_out) {
        auto& qq = (*q_out)[static_cast<size_t>(l)];
        qq.resize(static_cast<size_t>(n * hp.n_embd_q()));
        f.attention_inputs(l, h.data(), pos, qq.data(), nullptr, false);
      }
      f.run_layers(h.data(), pos, c, l, l + 1);
    }
  };
  for (size_t b = 0; b < doc.size(); b += C) {
    const auto chunk = std::span<const TokenId>(doc).subspan(b, std::min<size_t>(C, doc.size() - b));
    forward_layers(chunk, static_cast<int64_t>(b), cache, &keys, nullptr);
    cache.evict_middle(S, W);
  }
  std::vector<std::vector<float>> qs(static_cast<size_t>(hp.n_layer));
  model::KvCache qcache = cache;
  forward_layers(query, static_cast<int64_t>(doc.size()), qcache, nullptr, &qs);

  std::printf("model %s, document %zu tokens, needle at %lld (%zu tokens), budget %lld\n", m->name().c_str(),
              doc.size(), static_cast<long long>(needle_at), needle_ids.size(), static_cast<long long>(budget));
  retrieval::SelectionConfig sel;
  sel.budget = budget;
  sel.keep_first = S;
  for (int positions = 0; positions < 2; ++positions) {
    std::printf("%s\nlayer  recall  rank-of-best-needle-token\n", positions ? "absolute RoPE" : "no positions (pre-RoPE q·k)");
    for (int64_t l = 0; l < hp.n_layer; ++l) {
      std::vector<float> q = qs[static_cast<size_t>(l)];
      std::vector<float> kk = keys[static_cast<size_t>(l)];
      if (positions) {
        std::vector<int32_t> qp(query.size()), kp(doc.size());
        std::iota(qp.begin(), qp.end(), static_cast<int32_t>(doc.size()));
        std::iota(kp.begin(), kp.end(), 0);
        f.apply_rope(l, q.data(), hp.n_head, qp);
        f.apply_rope(l, kk.data(), hp.n_head_kv, kp);
      }
      retrieval::QueryScorer scorer(q, static_cast<int64_t>(query.size()),
                                    {hp.n_head, hp.n_head_kv, hp.head_dim_k}, {.kq_scale = hp.kq_scale});
      scorer.observe(kk.data(), static_cast<int64_t>(doc.size()));
      std::vector<float> s(doc.size());
      scorer.score(kk.data(), static_cast<int64_t>(doc.size()), s.data());
      const auto chosen = retrieval::select_tokens(s, sel);
      int64_t hit = 0;
      for (int64_t i = needle_at; i < needle_at + static_cast<int64_t>(needle_ids.size()); ++i) {
        hit += std::binary_search(chosen.begin(), chosen.end(), i);
      }
      float best = -1;
      for (int64_t i = needle_at; i < needle_at + static_cast<int64_t>(needle_ids.size()); ++i) best = std::max(best, s[static_cast<size_t>(i)]);
      int64_t rank = 0;
      for (float v : s) rank += v > best;
      std::printf("%5lld  %5.2f  %lld\n", static_cast<long long>(l), double(hit) / needle_ids.size(), static_cast<long long>(rank));
    }
  }
  return 0;
}
