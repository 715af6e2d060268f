#include "eval/suite_config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "ilre/config.h"
#include "ilre/error.h"

namespace ilre::eval {
namespace {

// Where a key sits, for error messages: "configs/eval-quick.yaml: models[1].lengths".
struct Where {
  std::string origin;
  std::string prefix;
  std::string key(const std::string& k) const {
    if (k.empty()) return origin + ": " + prefix;
    return origin + ": " + (prefix.empty() ? k : prefix + "." + k);
  }
};

[[noreturn]] void fail(const std::string& where, const std::string& what) {
  throw Exception(errc::invalid_argument, where + ": " + what);
}

template <class T>
T scalar(const YAML::Node& n, const std::string& where) {
  if (!n.IsScalar()) fail(where, "expected a single value");
  try {
    return n.as<T>();
  } catch (const YAML::Exception& e) {
    fail(where, e.msg);
  }
}

template <class T>
std::vector<T> nonempty_list(const YAML::Node& n, const std::string& where) {
  if (!n.IsSequence()) fail(where, "expected a list");
  if (n.size() == 0) fail(where, "must not be empty");
  std::vector<T> out;
  for (size_t i = 0; i < n.size(); ++i) out.push_back(scalar<T>(n[i], where + "[" + std::to_string(i) + "]"));
  return out;
}

template <class T>
void no_duplicates(const std::vector<T>& v, const std::string& where) {
  if (std::set<T>(v.begin(), v.end()).size() != v.size()) fail(where, "lists an entry twice");
}

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

// Names -> values through `lookup`, naming the known ones on a miss.
template <class T, class Lookup>
std::vector<T> named_list(const YAML::Node& n, const std::string& where, Lookup lookup,
                          const std::vector<std::string>& known) {
  const auto names = nonempty_list<std::string>(n, where);
  no_duplicates(names, where);
  std::vector<T> out;
  for (const std::string& name : names) {
    const auto v = lookup(name);
    if (!v) fail(where, "unknown entry '" + name + "' (known: " + joined(known) + ")");
    out.push_back(*v);
  }
  return out;
}

std::vector<std::string> task_names() {
  std::vector<std::string> out;
  for (Task t : all_tasks()) out.emplace_back(task_name(t));
  return out;
}

Budget parse_budget(const YAML::Node& n, const std::string& where) {
  const auto text = scalar<std::string>(n, where);
  Budget b;
  try {
    size_t used = 0;
    if (!text.empty() && text.back() == '%') {
      b.fraction = std::stod(text.substr(0, text.size() - 1), &used) / 100.0;
      if (used + 1 != text.size() || !(b.fraction > 0.0 && b.fraction <= 1.0)) throw std::invalid_argument("range");
    } else {
      b.tokens = std::stoll(text, &used);
      if (used != text.size() || b.tokens < 1) throw std::invalid_argument("range");
    }
  } catch (const std::exception&) {
    fail(where, "expected a token count >= 1 or a percentage in (0%, 100%], not '" + text + "'");
  }
  return b;
}

std::vector<double> depth_percents(const YAML::Node& n, const std::string& where) {
  std::vector<double> out;
  for (double p : nonempty_list<double>(n, where)) {
    if (!(p >= 0.0 && p <= 100.0)) fail(where, "depths are percentages in 0..100");
    out.push_back(p / 100.0);
  }
  no_duplicates(out, where);
  return out;
}

std::vector<double> depth_steps(const YAML::Node& n, const std::string& where) {
  const int steps = scalar<int>(n, where);
  if (steps < 1 || steps > 101) fail(where, "must be in 1..101");
  if (steps == 1) return {0.5};
  std::vector<double> out;
  for (int i = 0; i < steps; ++i) out.push_back(static_cast<double>(i) / (steps - 1));
  return out;
}

void apply_task_options(const YAML::Node& n, TaskSettings& t, const Where& w) {
  if (!n.IsMap()) fail(w.key("task_options"), "expected a mapping");
  for (const auto& kv : n) {
    const std::string k = kv.first.as<std::string>();
    const std::string where = w.key("task_options." + k);
    if (k == "passkey_digits") t.passkey_digits = scalar<int>(kv.second, where);
    else if (k == "distractors") t.distractors = scalar<int>(kv.second, where);
    else if (k == "values") t.values = scalar<int>(kv.second, where);
    else if (k == "queries") t.queries = scalar<int>(kv.second, where);
    else if (k == "vt_hops") t.vt_hops = scalar<int>(kv.second, where);
    else if (k == "vt_chains") t.vt_chains = scalar<int>(kv.second, where);
    else fail(where, "unknown key");
  }
}

void apply_method_options(const YAML::Node& n, MethodOptions& m, const Where& w) {
  if (!n.IsMap()) fail(w.key("method_options"), "expected a mapping");
  for (const auto& kv : n) {
    const std::string k = kv.first.as<std::string>();
    const std::string where = w.key("method_options." + k);
    if (k == "ilre_1kernel") m.ilre_1kernel = scalar<int32_t>(kv.second, where);
    else if (k == "snapkv_kernel") m.snapkv_kernel = scalar<int32_t>(kv.second, where);
    else if (k == "gemfilter_kernel") m.gemfilter_kernel = scalar<int32_t>(kv.second, where);
    else if (k == "lagkv_lag") m.lagkv_lag = scalar<int64_t>(kv.second, where);
    else if (k == "lagkv_cross_scoring") m.lagkv_cross_scoring = scalar<bool>(kv.second, where);
    else fail(where, "unknown key");
  }
}

std::vector<std::string> string_list(const YAML::Node& n, const std::string& where) {
  return nonempty_list<std::string>(n, where);
}

// Question files and filler paths are relative to the directory the suite is run from, as --config is.
QaRealSettings parse_qa_real(const YAML::Node& n, const Where& w) {
  if (!n.IsMap()) fail(w.key("qa_real"), "expected a mapping");
  QaRealSettings q;
  for (const auto& kv : n) {
    const std::string k = kv.first.as<std::string>();
    const std::string where = w.key("qa_real." + k);
    if (k == "documents") q.documents = string_list(kv.second, where);
    else if (k == "lengths") q.lengths = nonempty_list<int64_t>(kv.second, where);
    else if (k == "filler") q.filler = string_list(kv.second, where);
    else if (k == "budgets") q.budgets = nonempty_list<int64_t>(kv.second, where);
    else if (k == "answer") q.answer = scalar<bool>(kv.second, where);
    else if (k == "passage_chars") q.passage_chars = scalar<int64_t>(kv.second, where);
    else if (k == "probe_layers") q.probe_layers = nonempty_list<int32_t>(kv.second, where);
    else if (k == "probe_combine") {
      if (!kv.second.IsSequence()) fail(where, "expected a list of layer lists, e.g. [[5, 11]]");
      for (size_t i = 0; i < kv.second.size(); ++i) {
        q.probe_combine.push_back(nonempty_list<int32_t>(kv.second[i], where + "[" + std::to_string(i) + "]"));
      }
    }
    else if (k == "split") q.split = scalar<std::string>(kv.second, where);
    else fail(where, "unknown key");
  }
  try {
    q.validate();
  } catch (const Exception& e) {
    fail(w.key("qa_real"), e.error().message);
  }
  return q;
}

// One suite key; false when `key` is not a suite key (the caller decides whether that is an error).
bool apply_key(EvalSettings& s, const std::string& key, const YAML::Node& v, const Where& w, bool& saw_depths) {
  const std::string where = w.key(key);
  if (key == "lengths") {
    s.lengths = nonempty_list<int64_t>(v, where);
    for (int64_t n : s.lengths) {
      if (n < 16) fail(where, "lengths must be at least 16 tokens");
    }
    no_duplicates(s.lengths, where);
  } else if (key == "depths" || key == "depth_steps") {
    if (saw_depths) fail(where, "give either depths or depth_steps, not both");
    saw_depths = true;
    s.depths = key == "depths" ? depth_percents(v, where) : depth_steps(v, where);
  } else if (key == "tasks") {
    s.tasks = named_list<Task>(v, where, [](const std::string& n) { return task_from_name(n); }, task_names());
  } else if (key == "haystacks") {
    s.haystacks = named_list<Filler>(v, where, [](const std::string& n) { return filler_from_name(n); }, {"noise", "prose"});
  } else if (key == "methods") {
    const auto& known = method_names();
    s.methods = named_list<std::string>(
        v, where,
        [&known](const std::string& n) {
          return std::find(known.begin(), known.end(), n) != known.end() ? std::optional<std::string>(n) : std::nullopt;
        },
        known);
  } else if (key == "budget") {
    s.budget = parse_budget(v, where);
  } else if (key == "seed") {
    s.seed = scalar<uint64_t>(v, where);
  } else if (key == "max_answer_tokens") {
    s.max_answer_tokens = scalar<int32_t>(v, where);
  } else if (key == "samples") {
    s.samples = scalar<int32_t>(v, where);
  } else if (key == "stop_at_newline") {
    s.stop_at_newline = scalar<bool>(v, where);
  } else if (key == "save_spans") {
    s.save_spans = scalar<bool>(v, where);
  } else if (key == "qa_real") {
    s.qa_real = parse_qa_real(v, w);
  } else if (key == "task_options") {
    apply_task_options(v, s.task, w);
  } else if (key == "method_options") {
    apply_method_options(v, s.method, w);
  } else {
    return false;
  }
  return true;
}

// Later maps override earlier ones key by key, recursively; anything else is replaced.
YAML::Node merged(const YAML::Node& base, const YAML::Node& over) {
  if (!base || base.IsNull()) return YAML::Clone(over);
  if (!over || over.IsNull()) return YAML::Clone(base);
  if (!base.IsMap() || !over.IsMap()) return YAML::Clone(over);
  YAML::Node out = YAML::Clone(base);
  for (const auto& kv : over) {
    const std::string k = kv.first.as<std::string>();
    out[k] = merged(base[k], kv.second);
  }
  return out;
}

// The `ilre:` tree as YAML text, checked by ilre's own parser so a typo fails before any model loads.
std::string checked_ilre_yaml(const YAML::Node& node, const std::string& where) {
  if (!node || node.IsNull()) return "";
  if (!node.IsMap()) fail(where, "expected a mapping (an ilre config tree, see configs/reference.yaml)");
  YAML::Emitter e;
  e << node;
  const std::string text = e.c_str();
  if (auto r = parse_config(text, where); !r) throw Exception(r.error());
  return text;
}

ModelEntry parse_model(const YAML::Node& n, const EvalConfig& cfg, const YAML::Node& global_ilre, const Where& w) {
  if (!n.IsMap()) fail(w.key(""), "each models entry must be a mapping with at least a path");
  ModelEntry e;
  e.settings = cfg.defaults;
  bool saw_depths = false;
  YAML::Node ilre;
  for (const auto& kv : n) {
    const std::string k = kv.first.as<std::string>();
    if (k == "path") e.path = scalar<std::string>(kv.second, w.key(k));
    else if (k == "name") e.name = scalar<std::string>(kv.second, w.key(k));
    else if (k == "ilre") ilre = kv.second;
    else if (!apply_key(e.settings, k, kv.second, w, saw_depths)) fail(w.key(k), "unknown key");
  }
  if (e.path.empty()) fail(w.key("path"), "is required");
  if (e.name.empty()) e.name = std::filesystem::path(e.path).stem().string();
  e.ilre_yaml = checked_ilre_yaml(merged(global_ilre, ilre), w.key("ilre"));
  e.settings.validate();
  return e;
}

void check(bool ok, const std::string& what) {
  if (!ok) throw Exception(errc::invalid_argument, what);
}

}  // namespace

int64_t Budget::for_document(int64_t n_doc) const {
  if (fraction > 0.0) return std::max<int64_t>(1, std::llround(fraction * static_cast<double>(n_doc)));
  return tokens;
}

std::string Budget::describe() const {
  if (fraction <= 0.0) return std::to_string(tokens);
  std::ostringstream s;
  s << fraction * 100.0 << "%";
  return s.str();
}

void EvalSettings::validate() const {
  check(!lengths.empty() && !depths.empty() && !tasks.empty() && !haystacks.empty() && !methods.empty(),
        "eval settings: lengths, depths, tasks, haystacks and methods must not be empty");
  check(max_answer_tokens >= 1 && max_answer_tokens <= 4096, "max_answer_tokens must be in 1..4096");
  check(samples >= 1 && samples <= 1000, "samples must be in 1..1000");
  eval::validate(task);
  eval::validate(method);
}

nlohmann::json EvalSettings::to_json() const {
  nlohmann::json t = nlohmann::json::array(), h = nlohmann::json::array(), d = nlohmann::json::array();
  for (Task x : tasks) t.push_back(task_name(x));
  for (Filler x : haystacks) h.push_back(filler_name(x));
  for (double x : depths) d.push_back(x);
  return {{"lengths", lengths},
          {"depths", d},
          {"tasks", t},
          {"haystacks", h},
          {"methods", methods},
          {"budget", budget.describe()},
          {"seed", seed},
          {"max_answer_tokens", max_answer_tokens},
          {"samples", samples},
          {"stop_at_newline", stop_at_newline},
          {"task_options",
           {{"passkey_digits", task.passkey_digits}, {"distractors", task.distractors}, {"values", task.values},
            {"queries", task.queries}, {"vt_hops", task.vt_hops}, {"vt_chains", task.vt_chains}}},
          {"method_options",
           {{"ilre_1kernel", method.ilre_1kernel}, {"snapkv_kernel", method.snapkv_kernel},
            {"gemfilter_kernel", method.gemfilter_kernel}, {"lagkv_lag", method.lagkv_lag},
            {"lagkv_cross_scoring", method.lagkv_cross_scoring}}}};
}

EvalConfig parse_eval_config(const std::string& yaml_text, const std::string& origin) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    throw Exception(errc::bad_json, origin + ": " + e.what());
  }
  if (!root.IsMap()) fail(origin, "the top level must be a mapping");
  EvalConfig cfg;
  cfg.origin = origin;
  const Where top{origin, ""};
  bool saw_depths = false;
  // Suite keys first: models entries start from the top-level settings whatever the key order.
  for (const auto& kv : root) {
    const std::string k = kv.first.as<std::string>();
    if (k == "models" || k == "ilre") continue;
    if (!apply_key(cfg.defaults, k, kv.second, top, saw_depths)) {
      fail(top.key(k), "unknown key (known: lengths, depths, depth_steps, tasks, haystacks, methods, budget, seed, "
                       "max_answer_tokens, samples, stop_at_newline, save_spans, qa_real, task_options, method_options, "
                       "ilre, models)");
    }
  }
  cfg.defaults.validate();
  cfg.ilre_yaml = checked_ilre_yaml(root["ilre"], top.key("ilre"));
  if (const YAML::Node models = root["models"]) {
    if (!models.IsSequence() || models.size() == 0) fail(top.key("models"), "must be a non-empty list");
    for (size_t i = 0; i < models.size(); ++i) {
      cfg.models.push_back(parse_model(models[i], cfg, root["ilre"], Where{origin, "models[" + std::to_string(i) + "]"}));
    }
  }
  return cfg;
}

EvalConfig load_eval_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Exception(errc::io_failed, "cannot read eval config '" + path + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_eval_config(ss.str(), path);
}

ModelEntry entry_for_model(const EvalConfig& cfg, const std::string& model) {
  namespace fs = std::filesystem;
  const std::string stem = fs::path(model).stem().string();
  for (const ModelEntry& e : cfg.models) {
    if (fs::path(e.path).stem().string() == stem || e.name == model) {
      ModelEntry out = e;
      out.path = model;
      return out;
    }
  }
  return ModelEntry{model, stem, cfg.defaults, cfg.ilre_yaml};
}

}  // namespace ilre::eval
