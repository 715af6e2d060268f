// The `ilre eval` YAML: which models, lengths, depths, tasks, haystacks and methods, the shared budget, the
// seed, plus an optional `ilre:` tree that is an ordinary ilre Config override (parsed by ilre's own config
// parser). Every models entry may override any suite key and add its own `ilre:` tree, merged over the
// global one. configs/eval-quick.yaml documents every key.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/methods.h"
#include "eval/qa_real.h"
#include "eval/suite.h"

namespace ilre::eval {

// Recall budget shared by every method: a token count, or a fraction of each document.
struct Budget {
  int64_t tokens = 1024;
  double fraction = 0.0;  // > 0: round(fraction * document tokens) instead of tokens

  int64_t for_document(int64_t n_doc) const;
  std::string describe() const;  // "1024" or "10%"
};

struct EvalSettings {
  std::vector<int64_t> lengths{4096, 8192, 16384, 32768};   // target document tokens
  std::vector<double> depths{0.0, 0.25, 0.5, 0.75, 1.0};    // 0..1 (YAML: percent, or depth_steps)
  std::vector<Task> tasks{all_tasks()};
  std::vector<Filler> haystacks{Filler::noise, Filler::prose};
  std::vector<std::string> methods{method_names()};
  Budget budget;
  uint64_t seed = 7;
  int32_t max_answer_tokens = 32;
  int32_t samples = 1;           // cases per (task, haystack, length, depth)
  bool stop_at_newline = true;   // end the answer at its first line break (after some text)
  bool save_spans = false;       // write every method's recalled spans into the results
  TaskSettings task;
  MethodOptions method;
  // When set, the entry runs the real-document suite (qa_real.h) instead of the synthetic grid.
  std::optional<QaRealSettings> qa_real;

  // Throws Exception(invalid_argument) naming the key.
  void validate() const;
  nlohmann::json to_json() const;
};

struct ModelEntry {
  std::string path;   // GGUF file or name, resolved like --model
  std::string name;   // label in reports; default: the file stem
  EvalSettings settings;
  std::string ilre_yaml;  // the merged `ilre:` override tree (global, then this entry's), YAML text
};

struct EvalConfig {
  std::string origin;
  EvalSettings defaults;   // the top-level keys, used for a --model not listed under models
  std::string ilre_yaml;   // the global `ilre:` tree
  std::vector<ModelEntry> models;
};

// Throws Exception(bad_json / invalid_argument) naming the file and key: unknown keys, tasks, haystacks or
// methods, empty lists, values out of range, and an `ilre:` tree ilre's config parser rejects.
EvalConfig parse_eval_config(const std::string& yaml_text, const std::string& origin);
EvalConfig load_eval_config(const std::string& path);

// The entry for --model M: the models entry whose path or name has M's file stem, with its path replaced
// by M; otherwise a new entry with the top-level settings.
ModelEntry entry_for_model(const EvalConfig& cfg, const std::string& model);

}  // namespace ilre::eval
