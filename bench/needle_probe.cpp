// Question: at which layer, with which key positions and which query aggregation, does ILRe's scoring
// recall planted needles in varied prose? One streaming pass (sink + window caches in every layer) collects
// every layer's pre-RoPE keys; each layer is then scored against each question under several settings and
// the needle-token recall of the multi-kernel selection (budget = a fraction of the document) is printed.
//
//   needle_probe [model] [tokens=32768] [budget_fraction=0.1]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <string>
#include <vector>

#include "eval/haystack.h"
#include "eval/layer_probe.h"
#include "model/model.h"
#include "model/gguf/model_path.h"
#include "model/transformer.h"
#include "retrieval/pooling.h"
#include "retrieval/scoring.h"

using namespace ilre;
using model::TokenId;

struct Variant {
  const char* name;
  bool absolute;
  bool question_only;
  retrieval::ScoreConfig score;
};

int main(int argc, char** argv) {
  const std::string path = model::resolve_model_path(argc > 1 && *argv[1] ? std::optional<std::string>(argv[1]) : std::nullopt);
  const int64_t target = argc > 2 ? std::atoll(argv[2]) : 32768;
  const double budget_fraction = argc > 3 ? std::atof(argv[3]) : 0.1;
  auto m = model::Model::load(path);
  const auto& hp = m->hparams();
  const auto& vocab = m->vocab();

  struct Q {
    const char* needle;
    double depth;
    const char* question;
  };
  const std::vector<Q> qs = {
      {"The password for the old lighthouse is 58213.", 0.15, "What is the password for the old lighthouse?"},
      {"Captain Mira keeps the spare key under the blue stone by the gate.", 0.5, "Where does Captain Mira keep the spare key?"},
      {"The last train to Oslo leaves at seventeen minutes past nine.", 0.85, "When does the last train to Oslo leave?"},
  };
  std::vector<eval::Needle> needles;
  for (const Q& q : qs) needles.push_back({q.needle, q.depth});
  const eval::Haystack hay = eval::make_haystack(vocab, target, needles, 42);
  const auto doc = vocab.tokenize(hay.text, {.add_special = true});

  model::ComputePool pool(0);
  model::Forward f(*m, pool);
  const int64_t S = 64, W = 1024, C = 512;
  eval::LayerProbe probe(*m, pool, {S, W, C});
  probe.run(doc);
  const int64_t budget = static_cast<int64_t>(budget_fraction * static_cast<double>(doc.size()));
  std::printf("model %s, %zu tokens, budget %lld, needles at %lld, %lld, %lld\n", m->name().c_str(), doc.size(),
              static_cast<long long>(budget), static_cast<long long>(hay.needle_tokens[0].first),
              static_cast<long long>(hay.needle_tokens[1].first), static_cast<long long>(hay.needle_tokens[2].first));

  const std::vector<Variant> variants = {
      {"none/sum/sum", false, false, {true, retrieval::Aggregation::sum, retrieval::Aggregation::sum, hp.kq_scale}},
      {"none/sum/max", false, false, {true, retrieval::Aggregation::sum, retrieval::Aggregation::max, hp.kq_scale}},
      {"none/q-only/sum", false, true, {true, retrieval::Aggregation::sum, retrieval::Aggregation::sum, hp.kq_scale}},
      {"none/q-only/max", false, true, {true, retrieval::Aggregation::sum, retrieval::Aggregation::max, hp.kq_scale}},
      {"absolute/sum/sum", true, false, {true, retrieval::Aggregation::sum, retrieval::Aggregation::sum, hp.kq_scale}},
  };
  retrieval::SelectionConfig sel;
  sel.budget = budget;
  sel.keep_first = S;
  std::printf("%-18s", "layer");
  for (const Variant& v : variants) std::printf(" %18s", v.name);
  std::printf("\n");
  std::vector<std::vector<std::vector<float>>> query_q(qs.size(), std::vector<std::vector<float>>(static_cast<size_t>(hp.n_layer)));
  std::vector<std::pair<int64_t, int64_t>> q_rows(qs.size());
  std::vector<int64_t> n_query(qs.size());
  for (size_t i = 0; i < qs.size(); ++i) {
    const std::string prefix = "\n\nQuestion:";
    const auto pre = vocab.tokenize(prefix, {.add_special = false});
    const auto ques = vocab.tokenize(std::string(" ") + qs[i].question, {.add_special = false});
    const auto query = vocab.tokenize(prefix + " " + qs[i].question + "\nAnswer:", {.add_special = false});
    q_rows[i] = {static_cast<int64_t>(pre.size()), static_cast<int64_t>(pre.size() + ques.size())};
    n_query[i] = static_cast<int64_t>(query.size());
    query_q[i] = probe.encode_query(query);
  }
  for (int64_t l = 0; l < hp.n_layer; ++l) {
    std::printf("%-18lld", static_cast<long long>(l));
    for (const Variant& v : variants) {
      double recalled = 0;
      int64_t total = 0;
      std::vector<float> kk = probe.keys(l);
      if (v.absolute) {
        std::vector<int32_t> kp(doc.size());
        std::iota(kp.begin(), kp.end(), 0);
        f.apply_rope(l, kk.data(), hp.n_head_kv, kp);
      }
      for (size_t i = 0; i < qs.size(); ++i) {
        std::vector<float> q = query_q[i][static_cast<size_t>(l)];
        int64_t nq = n_query[i];
        if (v.absolute) {
          std::vector<int32_t> qp(static_cast<size_t>(nq));
          std::iota(qp.begin(), qp.end(), static_cast<int32_t>(doc.size()));
          f.apply_rope(l, q.data(), hp.n_head, qp);
        }
        if (v.question_only) {
          const auto [a, b] = q_rows[i];
          q = std::vector<float>(q.begin() + a * hp.n_embd_q(), q.begin() + b * hp.n_embd_q());
          nq = b - a;
        }
        retrieval::QueryScorer scorer(q, nq, {hp.n_head, hp.n_head_kv, hp.head_dim_k}, v.score);
        scorer.observe(kk.data(), static_cast<int64_t>(doc.size()));
        std::vector<float> s(doc.size());
        scorer.score(kk.data(), static_cast<int64_t>(doc.size()), s.data());
        const auto chosen = retrieval::select_tokens(s, sel);
        const auto [ns, ne] = hay.needle_tokens[i];
        for (int64_t t = ns; t < ne; ++t) recalled += std::binary_search(chosen.begin(), chosen.end(), t);
        total += ne - ns;
      }
      std::printf(" %18.2f", recalled / static_cast<double>(total));
    }
    std::printf("\n");
    std::fflush(stdout);
  }
  return 0;
}
