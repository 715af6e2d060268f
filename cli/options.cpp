#include "options.h"

namespace ilre::cli {

void add_common(CLI::App* cmd, CommonArgs& a) {
  cmd->add_option("-m,--model", a.model, "GGUF file or name");
  cmd->add_option("-c,--config", a.config_file, "YAML config (see configs/reference.yaml)");
  cmd->add_option("--set", a.sets, "override one setting: section.key=value (repeatable)");
  cmd->add_option("-t,--threads", a.threads, "compute threads (model.threads)");
  cmd->add_option("--layer", a.layer, "retrieval layer l_R (prefill.layer)");
  cmd->add_option("--budget", a.budget, "recalled tokens (recall.budget)");
  cmd->add_flag("--json", a.json, "print a JSON report on stdout");
}

Config resolve_config(const CommonArgs& a) {
  Config cfg;
  if (!a.config_file.empty()) {
    auto c = load_config(a.config_file);
    if (!c) throw Exception(c.error());
    cfg = *c;
  }
  if (auto r = apply_environment(cfg); !r) throw Exception(r.error());
  for (const std::string& s : a.sets) {
    if (auto r = apply_override(cfg, s); !r) throw Exception(r.error());
  }
  if (a.model) cfg.model.path = *a.model;
  if (a.threads) cfg.model.threads = *a.threads;
  if (a.layer) cfg.prefill.layer = *a.layer;
  if (a.budget) cfg.recall.budget = *a.budget;
  if (auto r = cfg.validate(); !r) throw Exception(r.error());
  return cfg;
}

}  // namespace ilre::cli
