// calibrate (offline choice of l_R) and eval (the RULER-style suite): thin clients of the eval library.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "eval/calibrate.h"
#include "eval/report.h"
#include "eval/run.h"
#include "eval/suite_config.h"
#include "model/kernels/compute_pool.h"
#include "model/model.h"
#include "model/gguf/model_path.h"
#include "options.h"

namespace fs = std::filesystem;

namespace ilre::cli {
namespace {

struct CalibrateArgs {
  CommonArgs common;
  std::vector<int64_t> lengths;
  std::vector<int> digits;
  int kv_needles = -1;
  int fact_needles = -1;
  int64_t seed = -1;
  double tolerance = 0.02;
  std::string out;
  std::string evidence;
  bool no_write = false;
};

// Where `ask` will look first: configs/models/ of the source tree the binary was built in, else of the
// working directory.
std::string default_config_path(const std::string& model_path) {
  const std::vector<fs::path> roots = model::search_roots();
  const fs::path root = roots.size() > 1 ? roots[1] : roots.front();
  return (root / "configs" / "models" / (fs::path(model_path).stem().string() + ".yaml")).string();
}

void run_calibrate(const CalibrateArgs& a) {
  const Config cfg = resolve_config(a.common);
  const std::string path = model::resolve_model_path(cfg.model.path.empty() ? std::nullopt : std::optional(cfg.model.path));
  spdlog::info("loading {}", path);
  const auto m = model::Model::load(path);
  model::ComputePool pool(cfg.model.threads);

  eval::CalibrationSettings s;
  if (!a.lengths.empty()) s.lengths = a.lengths;
  if (!a.digits.empty()) s.passkey_digits = a.digits;
  if (a.kv_needles >= 0) s.kv_needles = a.kv_needles;
  if (a.fact_needles >= 0) s.fact_needles = a.fact_needles;
  if (a.seed >= 0) s.seed = static_cast<uint64_t>(a.seed);
  s.tolerance = a.tolerance;
  if (a.common.budget) s.budget = *a.common.budget;
  for (int64_t n : s.lengths) {
    if (n < 256) throw Exception(errc::invalid_argument, "calibration lengths must be at least 256 tokens");
  }
  if (s.budget <= cfg.prefill.sink) {
    throw Exception(errc::invalid_argument, "the calibration budget must exceed the sink (" +
                                                std::to_string(cfg.prefill.sink) + " tokens)");
  }

  if (!a.evidence.empty()) {
    s.evidence = eval::evidence_from_qa_real(eval::read_qa_real_json(a.evidence), s.budget, m->hparams().n_layer, a.evidence);
    // Layer numbers mean nothing across models: refuse another model's probe rather than rank by it.
    if (s.evidence->model != fs::path(path).filename().string()) {
      throw Exception(errc::invalid_argument, "evidence '" + a.evidence + "' was probed on " + s.evidence->model +
                                                  ", not " + fs::path(path).filename().string());
    }
    spdlog::info("evidence: {} tune questions at budget {} from {}", s.evidence->n_questions, s.budget, a.evidence);
  }
  const auto r = eval::calibrate(*m, pool, cfg, s, [](const std::string& what, int64_t done, int64_t total) {
    spdlog::info("calibrate [{}/{}] {}", done + 1, total, what);
  });
  if (!a.no_write) {
    const std::string out = a.out.empty() ? default_config_path(path) : a.out;
    eval::write_model_config(out, r, fs::path(path).filename().string());
    spdlog::info("wrote {} (l_R = {})", out, r.layer);
  }
  if (a.common.json) {
    std::cout << r.to_json().dump(2) << "\n";
  } else {
    std::cout << r.table();
  }
}

void register_calibrate(CLI::App& app) {
  auto* cmd = app.add_subcommand("calibrate", "Choose the retrieval layer l_R by needle-token recall per layer (and real-text evidence with --evidence)");
  auto a = std::make_shared<CalibrateArgs>();
  add_common(cmd, a->common);
  cmd->add_option("--lengths", a->lengths, "haystack lengths in tokens (default 4096 16384 32768)");
  cmd->add_option("--digits", a->digits, "pass-key widths in digits (default 1 8 32 64)");
  cmd->add_option("--kv-needles", a->kv_needles, "key-value sentence needles per haystack (default 2)");
  cmd->add_option("--fact-needles", a->fact_needles, "plain-language fact needles per haystack (default 4)");
  cmd->add_option("--seed", a->seed, "haystack and needle seed (default 7)");
  cmd->add_option("--tolerance", a->tolerance, "mean-recall deficit still counted as a tie with the best layer (default 0.02)");
  cmd->add_option("-o,--out", a->out, "where to write the model config (default configs/models/<model>.yaml)");
  cmd->add_option("--evidence", a->evidence,
                  "a qa_real run with a layer probe (ilre eval -c configs/eval-real-probe.yaml -o DIR: DIR or its "
                  "qa_real.json[.zst]); the layer is then chosen on (needle + real-text evidence recall) / 2 at the "
                  "calibration budget");
  cmd->add_flag("--no-write", a->no_write, "print the table only");
  cmd->callback([a] { run_calibrate(*a); });
}

struct EvalArgs {
  std::string config;   // the eval YAML (not an ilre config: its `ilre:` section is one)
  std::string out;
  CommonArgs common;    // --model, --set, --threads, --layer, --budget
  bool quiet = false;
};

// The ilre Config of one model: the eval's merged `ilre:` tree as the config file, then ilre's usual
// precedence (environment < --set < flags), so `eval` and `ask` read settings the same way. The tree is kept
// beside the results as ilre-input.yaml.
Config entry_config(const EvalArgs& a, const eval::ModelEntry& e) {
  const fs::path input = fs::path(eval::model_dir(a.out, e.name)) / "ilre-input.yaml";
  fs::create_directories(input.parent_path());
  {
    std::ofstream f(input, std::ios::trunc);
    f << e.ilre_yaml;
    if (!f) throw Exception(errc::io_failed, "cannot write '" + input.string() + "'");
  }
  CommonArgs c = a.common;
  c.config_file = input.string();
  c.model = e.path;
  c.budget.reset();  // the suite's budget, not recall.budget, applies to every method
  return resolve_config(c);
}

std::string now_utc() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

// The real-document suite of one models entry: qa_real.json and qa_real.md beside the entry's other files.
std::string run_qa_entry(const EvalArgs& a, const eval::ModelEntry& e, const Config& cfg_in, spdlog::logger& log) {
  Config cfg = cfg_in;
  cfg.model.path = model::resolve_model_path(cfg.model.path.empty() ? std::optional(e.path) : std::optional(cfg.model.path));
  const auto m = model::Model::load(cfg.model.path);
  const int32_t layer = eval::resolve_layer(cfg);
  if (layer < 0 || layer >= m->hparams().n_layer) {
    throw Exception(errc::invalid_argument, "retrieval layer " + std::to_string(layer) + " is outside the model");
  }
  model::ComputePool pool(cfg.model.threads);
  log.info("eval {}: qa_real, {} question files, lengths {}, budgets {}, l_R {}", e.name, e.settings.qa_real->documents.size(),
           nlohmann::json(e.settings.qa_real->lengths).dump(), nlohmann::json(e.settings.qa_real->budgets).dump(), layer);
  const eval::QaRun r = eval::run_qa_real(*m, pool, cfg, layer, *e.settings.qa_real, e.settings.methods,
                                          e.settings.max_answer_tokens, e.settings.stop_at_newline,
                                          [&log](const std::string& line) { log.info("{}", line); });
  const fs::path dir = eval::model_dir(a.out, e.name);
  eval::write_atomic(dir / "qa_real.json", eval::to_json(r).dump(1) + "\n");
  const std::string md = eval::qa_markdown(r);
  eval::write_atomic(dir / "qa_real.md", md);
  log.info("{}: qa_real in {:.0f} s; wrote {}", e.name, r.seconds, (dir / "qa_real.md").string());
  return md;
}

void run_eval(const EvalArgs& a) {
  const eval::EvalConfig ec = eval::load_eval_config(a.config);
  std::vector<eval::ModelEntry> entries = ec.models;
  if (a.common.model) entries = {eval::entry_for_model(ec, *a.common.model)};
  if (entries.empty()) throw Exception(errc::invalid_argument, a.config + ": no models: add a models list or pass --model");
  for (eval::ModelEntry& e : entries) {
    if (a.common.budget) e.settings.budget = eval::Budget{.tokens = *a.common.budget, .fraction = 0.0};
  }
  // Progress goes to stderr (stdout carries the report) on a logger of its own, unregistered, whose level
  // shows it by default (the program logs warnings only) unless --quiet.
  auto log = std::make_shared<spdlog::logger>("eval", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
  log->set_pattern("%^[%l]%$ %v");
  log->set_level(a.quiet ? spdlog::level::warn : spdlog::level::info);
  const nlohmann::json meta = {{"config", a.config}, {"started", now_utc()}, {"ilre_version", "0.1.0"},
                               {"model_override", a.common.model.value_or("")}};
  std::vector<eval::ModelRun> runs;
  eval::ReportFiles files;
  std::string qa_reports;
  for (const eval::ModelEntry& e : entries) {
    const Config cfg = entry_config(a, e);
    if (e.settings.qa_real) {
      qa_reports += run_qa_entry(a, e, cfg, *log);
      continue;
    }
    std::string methods;
    for (const std::string& m : e.settings.methods) methods += (methods.empty() ? "" : ", ") + m;
    log->info("eval {}: {} cases ({} lengths x {} depths x {} tasks x {} haystacks x {} samples), methods: {}", e.name,
              eval::case_grid(e.settings).size(), e.settings.lengths.size(), e.settings.depths.size(),
              e.settings.tasks.size(), e.settings.haystacks.size(), e.settings.samples,
              methods);
    runs.push_back(eval::run_model(e, cfg, [&](const eval::RunProgress& p) { log->info("{}", eval::progress_line(p)); }));
    // After every model, so a long suite keeps what it has finished.
    files = eval::write_report(a.out, runs, meta);
    log->info("{}: l_R {}, {} cases in {:.0f} s; wrote {}", e.name, runs.back().layer, runs.back().cases.size(),
              runs.back().seconds, files.markdown);
  }
  if (!runs.empty()) {
    std::cout << eval::markdown_report(runs, meta);
    log->info("results: {}, {} heatmaps under {}", files.json, files.heatmaps.size(), a.out);
  }
  std::cout << qa_reports;
}

void register_eval(CLI::App& app) {
  auto* cmd = app.add_subcommand("eval", "RULER-style synthetic long-context suite: ILRe against baselines in one engine");
  auto a = std::make_shared<EvalArgs>();
  cmd->add_option("-c,--config", a->config, "eval YAML (see configs/eval-quick.yaml)")->required();
  cmd->add_option("-o,--out", a->out, "directory for results.json, report.md and the heatmaps")->required();
  cmd->add_option("-m,--model", a->common.model, "run only this model (GGUF file or name); a matching models entry keeps its settings");
  cmd->add_option("--set", a->common.sets, "override one ilre setting: section.key=value (repeatable)");
  cmd->add_option("-t,--threads", a->common.threads, "compute threads (model.threads)");
  cmd->add_option("--layer", a->common.layer, "retrieval layer l_R (prefill.layer)");
  cmd->add_option("--budget", a->common.budget, "recalled tokens for every method (overrides the suite's budget)");
  cmd->add_flag("-q,--quiet", a->quiet, "no progress lines");
  cmd->callback([a] { run_eval(*a); });
}

}  // namespace

void register_eval_commands(CLI::App& app) {
  register_calibrate(app);
  register_eval(app);
}

}  // namespace ilre::cli
