#include "eval/calibrate.h"

#include <zstd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <sstream>

#include "eval/haystack.h"
#include "eval/needles.h"
#include "eval/report.h"
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

namespace {

[[noreturn]] void bad_evidence(const std::string& source, const std::string& why) {
  throw Exception(errc::invalid_argument, "evidence '" + source + "': " + why);
}

// Per-layer values with NaN for "not measured": null in JSON, where NaN has no spelling.
nlohmann::json nan_as_null(const std::vector<double>& values) {
  nlohmann::json out = nlohmann::json::array();
  for (double v : values) out.push_back(std::isnan(v) ? nlohmann::json(nullptr) : nlohmann::json(v));
  return out;
}

// "[0.5383, null, ...]": the model config's per-layer lists, four decimals.
std::string yaml_list(const std::vector<double>& values) {
  std::string out = "[";
  for (size_t l = 0; l < values.size(); ++l) {
    char buf[32];
    if (std::isnan(values[l])) {
      std::snprintf(buf, sizeof(buf), "%snull", l ? ", " : "");
    } else {
      std::snprintf(buf, sizeof(buf), "%s%.4f", l ? ", " : "", values[l]);
    }
    out += buf;
  }
  return out + "]";
}

// One or more zstd frames of any size (the zstd command does not always record the content size).
std::string zstd_text(const std::string& packed, const std::string& source) {
  std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> ctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
  if (!ctx) throw Exception(errc::io_failed, "zstd: out of memory");
  std::string out;
  std::vector<char> buf(ZSTD_DStreamOutSize());
  ZSTD_inBuffer in{packed.data(), packed.size(), 0};
  size_t last = 0;
  while (in.pos < in.size) {
    ZSTD_outBuffer o{buf.data(), buf.size(), 0};
    last = ZSTD_decompressStream(ctx.get(), &o, &in);
    if (ZSTD_isError(last)) bad_evidence(source, std::string("not a zstd file: ") + ZSTD_getErrorName(last));
    out.append(buf.data(), o.pos);
  }
  if (last != 0) bad_evidence(source, "truncated zstd frame");
  return out;
}

}  // namespace

bool EvidenceRecall::probed(size_t layer) const { return layer < by_layer.size() && !std::isnan(by_layer[layer]); }

nlohmann::json EvidenceRecall::to_json() const {
  return {{"source", source}, {"model", model}, {"budget", budget}, {"questions", n_questions}, {"recall", nan_as_null(by_layer)}};
}

nlohmann::json read_qa_real_json(const std::string& path) {
  std::filesystem::path file(path);
  if (std::filesystem::is_directory(file)) {
    std::optional<std::filesystem::path> found;
    for (const auto& e : std::filesystem::recursive_directory_iterator(file)) {
      const std::string name = e.path().filename().string();
      if (name == "qa_real.json" || name == "qa_real.json.zst") {
        found = e.path();
        break;
      }
    }
    if (!found) throw Exception(errc::invalid_argument, "no qa_real.json(.zst) under '" + path + "'");
    file = *found;
  }
  std::string text = read_file(file);
  if (file.extension() == ".zst") text = zstd_text(text, file.string());
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) bad_evidence(file.string(), "not JSON");
  return j;
}

EvidenceRecall evidence_from_qa_real(const nlohmann::json& run, int64_t budget, int64_t n_layers,
                                     const std::string& source) {
  if (!run.is_object() || run.value("task", "") != "qa_real") bad_evidence(source, "not a qa_real result");
  const nlohmann::json& st = run.value("settings", nlohmann::json::object());
  const auto layers = st.value("probe_layers", std::vector<int64_t>{});
  const auto budgets = st.value("budgets", std::vector<int64_t>{});
  if (layers.empty()) bad_evidence(source, "the run has no layer probe (qa_real.probe_layers; configs/eval-real-probe.yaml)");
  const auto bi = std::find(budgets.begin(), budgets.end(), budget) - budgets.begin();
  if (bi == static_cast<std::ptrdiff_t>(budgets.size())) {
    bad_evidence(source, "budget " + std::to_string(budget) + " was not probed (probed: " + nlohmann::json(budgets).dump() + ")");
  }
  EvidenceRecall e;
  e.source = source;
  e.model = std::filesystem::path(run.value("model", "")).filename().string();
  e.budget = budget;
  e.by_layer.assign(static_cast<size_t>(n_layers), std::numeric_limits<double>::quiet_NaN());
  std::vector<double> sum(layers.size(), 0.0);
  for (int64_t l : layers) {
    if (l < 0 || l >= n_layers) bad_evidence(source, "probed layer " + std::to_string(l) + " is past the model's " + std::to_string(n_layers));
  }
  for (const auto& ctx : run.value("contexts", nlohmann::json::array())) {
    for (const auto& q : ctx.value("questions", nlohmann::json::array())) {
      if (q.value("heldout", false)) continue;
      const auto cover = q.value("probe_cover", std::vector<std::vector<double>>{});
      // Rows past the layers are probe_combine groups.
      if (cover.size() < layers.size()) bad_evidence(source, "question " + q.value("id", "?") + " has no probe row per layer");
      for (size_t li = 0; li < layers.size(); ++li) {
        if (static_cast<size_t>(bi) >= cover[li].size()) bad_evidence(source, "question " + q.value("id", "?") + " lacks a budget column");
        sum[li] += cover[li][static_cast<size_t>(bi)];
      }
      ++e.n_questions;
    }
  }
  if (e.n_questions == 0) bad_evidence(source, "no tune question");
  for (size_t li = 0; li < layers.size(); ++li) {
    e.by_layer[static_cast<size_t>(layers[li])] = sum[li] / static_cast<double>(e.n_questions);
  }
  return e;
}

std::vector<double> combined_recall(const std::vector<double>& needle, const EvidenceRecall& evidence) {
  std::vector<double> out(needle.size(), std::numeric_limits<double>::quiet_NaN());
  for (size_t l = 0; l < needle.size(); ++l) {
    if (evidence.probed(l)) out[l] = 0.5 * (needle[l] + evidence.by_layer[l]);
  }
  return out;
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
  std::vector<bool> eligible = retrieval_candidates(model.hparams());
  if (settings.evidence) {
    if (settings.evidence->by_layer.size() != n_layers) {
      throw Exception(errc::invalid_argument, "evidence for " + std::to_string(settings.evidence->by_layer.size()) +
                                                  " layers, the model has " + std::to_string(n_layers));
    }
    r.evidence = settings.evidence;
    r.combined = combined_recall(r.mean_recall, *settings.evidence);
    if (eligible.empty()) eligible.assign(n_layers, true);
    for (size_t l = 0; l < n_layers; ++l) eligible[l] = eligible[l] && settings.evidence->probed(l);
  }
  r.layer = choose_layer(r.combined.empty() ? r.mean_recall : r.combined, settings.tolerance, eligible);
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
                {"recall", {{"policy", cfg.recall.policy}, {"lexical_weight", cfg.recall.lexical_weight}}},
                {"query_template", cfg.query.template_text}};
  return r;
}

nlohmann::json CalibrationResult::to_json() const {
  nlohmann::json per;
  for (size_t k = 0; k < needle_kinds.size(); ++k) per.push_back({{"needle", needle_kinds[k]}, {"recall", per_needle[k]}});
  nlohmann::json j{{"layer", layer}, {"mean_recall", mean_recall}, {"samples", samples.size()}, {"lengths", lengths}, {"recall_by_length", recall},
                   {"recall_by_needle", per}, {"settings", settings}};
  if (evidence) {
    j["evidence"] = evidence->to_json();
    j["combined_recall"] = nan_as_null(combined);
  }
  return j;
}

std::string CalibrationResult::table() const {
  std::ostringstream s;
  s << "layer";
  for (int64_t n : lengths) s << "  " << n << "-tok";
  s << "   mean" << (evidence ? "  evidence  combined" : "") << "\n";
  for (size_t l = 0; l < mean_recall.size(); ++l) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%5zu", l);
    s << buf;
    for (const auto& row : recall) {
      std::snprintf(buf, sizeof(buf), "  %*.2f", static_cast<int>(std::to_string(lengths[0]).size() + 4), row[l]);
      s << buf;
    }
    std::snprintf(buf, sizeof(buf), "   %.3f", mean_recall[l]);
    s << buf;
    if (evidence) {
      if (evidence->probed(l)) {
        std::snprintf(buf, sizeof(buf), "  %8.3f  %8.3f", evidence->by_layer[l], combined[l]);
      } else {
        std::snprintf(buf, sizeof(buf), "  %8s  %8s", "-", "-");
      }
      s << buf;
    }
    s << (static_cast<int32_t>(l) == layer ? "  <- l_R\n" : "\n");
  }
  if (evidence) {
    s << "evidence: " << evidence->source << " (" << evidence->n_questions << " tune questions, budget " << evidence->budget
      << "); combined = (mean + evidence) / 2 ranks the probed layers\n";
  }
  return s.str();
}

void write_model_config(const std::string& path, const CalibrationResult& r, const std::string& model_name) {
  std::ostringstream y;
  y << "# Written by `ilre calibrate`: the retrieval layer l_R for " << model_name << ".\n"
    << "# ilre reads `layer` when prefill.layer is -1. mean_recall[l] is the needle-token recall at layer l.\n"
    << "# On models that mix sliding-window and global layers only the global ones compete\n"
    << "# (eval/calibrate.h retrieval_candidates).\n"
    << "layer: " << r.layer << "\n"
    << "model: \"" << model_name << "\"\n"
    << "mean_recall: " << yaml_list(r.mean_recall) << "\n";
  if (r.evidence) {
    y << "# evidence_recall[l]: real-text evidence recall of the qa_real layer probe (null: not probed); the layer\n"
      << "# was chosen on combined_recall = (mean_recall + evidence_recall) / 2.\n"
      << "evidence_recall: " << yaml_list(r.evidence->by_layer) << "\n";
  }
  y << "calibration: " << r.to_json().dump() << "\n";
  write_atomic(path, y.str());
}

}  // namespace ilre::eval
