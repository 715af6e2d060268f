#include "eval/calibrate.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <sstream>

#include "eval/haystack.h"
#include "eval/needles.h"
#include "retrieval/configure.h"
#include "retrieval/prompt.h"
#include "ilre/error.h"
#include "retrieval/pooling.h"
#include "retrieval/scoring.h"

namespace ilre::eval {

int32_t choose_layer(const std::vector<double>& mean_recall, double tolerance, const std::vector<bool>& eligible) {
  auto ok = [&](size_t l) { return eligible.empty() || (l < eligible.size() && eligible[l]); };
  double best = -1.0;
  for (size_t l = 0; l < mean_recall.size(); ++l) {
    if (ok(l)) best = std::max(best, mean_recall[l]);
  }
  if (best < 0.0) return -1;
  for (size_t l = 0; l < mean_recall.size(); ++l) {
    if (ok(l) && mean_recall[l] >= best - tolerance - 1e-12) return static_cast<int32_t>(l);
  }
  return -1;
}

std::vector<bool> retrieval_candidates(const model::HParams& hp) {
  std::vector<bool> global(static_cast<size_t>(hp.n_layer), true);
  bool any_global = false;
  for (int64_t l = 0; l < hp.n_layer; ++l) {
    global[static_cast<size_t>(l)] = !hp.is_swa(l);
    any_global = any_global || !hp.is_swa(l);
  }
  if (!any_global) return {};
  return global;
}

CalibrationResult calibrate(const model::Model& model, model::ComputePool& pool, const Config& cfg,
                            const CalibrationSettings& settings, const CalibrationProgress& progress) {
  const auto& hp = model.hparams();
  const auto& vocab = model.vocab();
  CalibrationResult r;
  const auto n_layers = static_cast<size_t>(hp.n_layer);
  std::vector<NeedleSpec> specs;
  int label = 0;
  for (int d : settings.passkey_digits) {
    specs.push_back(passkey_needle(d, label++, settings.seed));
    r.needle_kinds.push_back("passkey-" + std::to_string(d));
  }
  for (int i = 0; i < settings.kv_needles; ++i) {
    specs.push_back(kv_needle(i, settings.seed));
    r.needle_kinds.push_back("kv");
  }
  for (int i = 0; i < settings.fact_needles; ++i) {
    specs.push_back(fact_needle(i, settings.seed));
    r.needle_kinds.push_back("fact");
  }
  if (specs.empty()) throw Exception(errc::invalid_argument, "calibration needs at least one needle");
  r.per_needle.assign(specs.size(), std::vector<double>(n_layers, 0.0));

  const retrieval::SelectionConfig base_sel = retrieval::selection_config(cfg, settings.budget, cfg.prefill.sink);
  const retrieval::ScoreConfig score_cfg = retrieval::score_config(cfg, hp);
  const ProbeSettings probe_settings{cfg.prefill.sink, cfg.prefill.window, cfg.prefill.chunk};

  for (size_t li = 0; li < settings.lengths.size(); ++li) {
    // Needles at evenly spread depths, order shuffled by the seed so no kind always sits at one depth.
    std::vector<Needle> planted;
    std::vector<size_t> order(specs.size());
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), std::mt19937_64(settings.seed + li));
    for (size_t k = 0; k < specs.size(); ++k) {
      const double depth = 0.05 + 0.9 * static_cast<double>(k) / static_cast<double>(std::max<size_t>(1, specs.size() - 1));
      planted.push_back({specs[order[k]].sentence, depth});
    }
    const Haystack hay = make_haystack(vocab, settings.lengths[li], planted, settings.seed + 100 + li);
    const auto doc = vocab.tokenize(hay.text, {.add_special = true});
    r.lengths.push_back(static_cast<int64_t>(doc.size()));
    if (progress) progress("prefill " + std::to_string(doc.size()) + " tokens", static_cast<int64_t>(li),
                           static_cast<int64_t>(settings.lengths.size()));
    LayerProbe probe(model, pool, probe_settings);
    probe.run(doc);

    std::vector<double> recall(n_layers, 0.0);
    for (size_t k = 0; k < specs.size(); ++k) {
      const NeedleSpec& spec = specs[order[k]];
      const auto [ns, ne] = hay.needle_tokens[k];
      const retrieval::QueryPrompt qp = retrieval::query_prompt(cfg, model, spec.question);
      const auto q_layers = probe.encode_query(qp.query);
      const auto [row0, row1] = retrieval::scoring_rows(cfg, qp);
      const int64_t q_width = hp.n_head * hp.head_dim_k;
      std::vector<double>& sample = r.samples.emplace_back(n_layers, 0.0);
      for (size_t l = 0; l < n_layers; ++l) {
        retrieval::QueryScorer scorer(std::span<const float>(q_layers[l]).subspan(static_cast<size_t>(row0 * q_width),
                                                                                  static_cast<size_t>((row1 - row0) * q_width)),
                                      row1 - row0, {hp.n_head, hp.n_head_kv, hp.head_dim_k}, score_cfg);
        const std::vector<float>& keys = probe.keys(static_cast<int64_t>(l));
        scorer.observe(keys.data(), probe.n_tokens());
        std::vector<float> s(static_cast<size_t>(probe.n_tokens()));
        scorer.score(keys.data(), probe.n_tokens(), s.data());
        const auto chosen = retrieval::select_tokens(s, base_sel);
        int64_t hit = 0;
        for (int64_t t = ns; t < ne; ++t) hit += std::binary_search(chosen.begin(), chosen.end(), t);
        const double frac = static_cast<double>(hit) / static_cast<double>(ne - ns);
        recall[l] += frac / static_cast<double>(specs.size());
        sample[l] = frac;
        r.per_needle[order[k]][l] += frac / static_cast<double>(settings.lengths.size());
      }
    }
    r.recall.push_back(recall);
  }
  r.mean_recall.assign(n_layers, 0.0);
  for (const auto& row : r.recall) {
    for (size_t l = 0; l < n_layers; ++l) r.mean_recall[l] += row[l] / static_cast<double>(r.recall.size());
  }
  r.layer = choose_layer(r.mean_recall, settings.tolerance, retrieval_candidates(model.hparams()));
  r.settings = {{"lengths", settings.lengths},
                {"passkey_digits", settings.passkey_digits},
                {"kv_needles", settings.kv_needles},
                {"fact_needles", settings.fact_needles},
                {"budget", settings.budget},
                {"seed", settings.seed},
                {"tolerance", settings.tolerance},
                {"sink", cfg.prefill.sink},
                {"window", cfg.prefill.window},
                {"chunk", cfg.prefill.chunk},
                {"scoring", {{"softmax", cfg.scoring.softmax}, {"over_heads", cfg.scoring.over_heads},
                             {"over_queries", cfg.scoring.over_queries}, {"positions", cfg.scoring.positions}}},
                {"pooling", {{"kernels", cfg.pooling.kernels}, {"shares", cfg.pooling.shares}, {"mode", cfg.pooling.mode}}},
                {"query_template", cfg.query.template_text}};
  return r;
}

nlohmann::json CalibrationResult::to_json() const {
  nlohmann::json per;
  for (size_t k = 0; k < needle_kinds.size(); ++k) per.push_back({{"needle", needle_kinds[k]}, {"recall", per_needle[k]}});
  return {{"layer", layer}, {"mean_recall", mean_recall}, {"samples", samples.size()}, {"lengths", lengths}, {"recall_by_length", recall},
          {"recall_by_needle", per}, {"settings", settings}};
}

std::string CalibrationResult::table() const {
  std::ostringstream s;
  s << "layer";
  for (int64_t n : lengths) s << "  " << n << "-tok";
  s << "   mean\n";
  for (size_t l = 0; l < mean_recall.size(); ++l) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%5zu", l);
    s << buf;
    for (const auto& row : recall) {
      std::snprintf(buf, sizeof(buf), "  %*.2f", static_cast<int>(std::to_string(lengths[0]).size() + 4), row[l]);
      s << buf;
    }
    std::snprintf(buf, sizeof(buf), "   %.3f%s\n", mean_recall[l], static_cast<int32_t>(l) == layer ? "  <- l_R" : "");
    s << buf;
  }
  return s.str();
}

void write_model_config(const std::string& path, const CalibrationResult& r, const std::string& model_name) {
  std::ostringstream y;
  y << "# Written by `ilre calibrate`: the retrieval layer l_R for " << model_name << ".\n"
    << "# ilre reads `layer` when prefill.layer is -1. mean_recall[l] is the needle-token recall at layer l.\n"
    << "layer: " << r.layer << "\n"
    << "model: \"" << model_name << "\"\n"
    << "mean_recall: [";
  for (size_t l = 0; l < r.mean_recall.size(); ++l) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%s%.4f", l ? ", " : "", r.mean_recall[l]);
    y << buf;
  }
  y << "]\n"
    << "calibration: " << r.to_json().dump() << "\n";
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << y.str();
    out.flush();
    if (!out) throw Exception(errc::io_failed, "cannot write '" + tmp + "'");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) throw Exception(errc::io_failed, "cannot rename '" + tmp + "': " + ec.message());
}

}  // namespace ilre::eval
