#include "eval/suite.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <set>

#include "eval/needles.h"
#include "ilre/error.h"

namespace ilre::eval {
namespace {

constexpr int kLabels = 16;  // distinct vault labels passkey_needle knows

// constexpr: constant-initialised, so default EvalSettings built during static initialisation see it.
constexpr std::pair<Task, std::string_view> kTaskNames[] = {
    {Task::niah_single, "niah_single"},
    {Task::niah_multikey, "niah_multikey"},
    {Task::niah_multivalue, "niah_multivalue"},
    {Task::niah_multiquery, "niah_multiquery"},
    {Task::vt, "vt"},
};

// splitmix64: spreads neighbouring seeds and grid cells over unrelated random streams.
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t case_seed(uint64_t seed, const CaseSpec& s) {
  uint64_t h = mix(seed);
  h = mix(h ^ static_cast<uint64_t>(s.task));
  h = mix(h ^ static_cast<uint64_t>(s.haystack));
  h = mix(h ^ static_cast<uint64_t>(s.length));
  h = mix(h ^ static_cast<uint64_t>(std::llround(s.depth * 1e6)));
  return mix(h ^ static_cast<uint64_t>(s.sample));
}

struct Planted {
  std::string sentence;
  double depth;
  bool required;
};

// What a task plants and asks, before the haystack is built around it.
struct Plan {
  std::vector<Planted> needles;
  std::string question;
  std::vector<std::string> answers;
};

std::vector<int> distinct_labels(std::mt19937_64& rng, int n) {
  std::vector<int> labels(kLabels);
  for (int i = 0; i < kLabels; ++i) labels[static_cast<size_t>(i)] = i;
  std::shuffle(labels.begin(), labels.end(), rng);
  labels.resize(static_cast<size_t>(n));
  return labels;
}

double uniform_depth(std::mt19937_64& rng) { return std::uniform_real_distribution<double>(0.0, 1.0)(rng); }

// "the amber vault" from a needle's question, so multi-label questions read naturally.
std::string vault_of(const NeedleSpec& n) {
  const std::string prefix = "What is the pass key for ";
  return n.question.substr(prefix.size(), n.question.size() - prefix.size() - 1);
}

std::string join_list(const std::vector<std::string>& items) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += i + 1 == items.size() ? " and " : ", ";
    out += items[i];
  }
  return out;
}

Plan plan_single(const CaseSpec& spec, const TaskSettings& s, std::mt19937_64& rng, uint64_t seed) {
  const NeedleSpec n = passkey_needle(s.passkey_digits, distinct_labels(rng, 1)[0], seed);
  return {{{n.sentence, spec.depth, true}}, n.question, {n.answer}};
}

Plan plan_multikey(const CaseSpec& spec, const TaskSettings& s, std::mt19937_64& rng, uint64_t seed) {
  const std::vector<int> labels = distinct_labels(rng, 1 + s.distractors);
  const NeedleSpec target = passkey_needle(s.passkey_digits, labels[0], seed);
  Plan p{{{target.sentence, spec.depth, true}}, target.question, {target.answer}};
  for (size_t i = 1; i < labels.size(); ++i) {
    p.needles.push_back({passkey_needle(s.passkey_digits, labels[i], seed).sentence, uniform_depth(rng), false});
  }
  return p;
}

Plan plan_multivalue(const CaseSpec& spec, const TaskSettings& s, std::mt19937_64& rng, uint64_t seed) {
  const int label = distinct_labels(rng, 1)[0];
  Plan p;
  std::set<std::string> seen;
  // One label, several keys: passkey_needle draws the key from its seed, so vary the seed until the keys
  // are distinct.
  for (uint64_t k = 0; static_cast<int>(p.answers.size()) < s.values; ++k) {
    const NeedleSpec n = passkey_needle(s.passkey_digits, label, seed + 1000 * k);
    if (!seen.insert(n.answer).second) continue;
    p.needles.push_back({n.sentence, p.needles.empty() ? spec.depth : uniform_depth(rng), true});
    p.answers.push_back(n.answer);
    if (p.question.empty()) p.question = "What are all the pass keys for " + vault_of(n) + "?";
  }
  return p;
}

Plan plan_multiquery(const CaseSpec& spec, const TaskSettings& s, std::mt19937_64& rng, uint64_t seed) {
  Plan p;
  std::vector<std::string> vaults;
  for (int label : distinct_labels(rng, s.queries)) {
    const NeedleSpec n = passkey_needle(s.passkey_digits, label, seed);
    p.needles.push_back({n.sentence, p.needles.empty() ? spec.depth : uniform_depth(rng), true});
    p.answers.push_back(n.answer);
    vaults.push_back(vault_of(n));
  }
  p.question = "What are the pass keys for " + join_list(vaults) + "?";
  return p;
}

std::string variable_name(std::mt19937_64& rng) {
  std::string v;
  for (int i = 0; i < 5; ++i) v += static_cast<char>('A' + rng() % 26);
  return v;
}

std::string five_digits(std::mt19937_64& rng) { return std::to_string(10000 + rng() % 90000); }

// RULER's variable tracking: a chain "VAR A = 12345. VAR B = VAR A. ..." planted in order; the first
// assignment at `start`, the rest spread over the remainder of the document so the order is kept.
Plan plan_vt(const CaseSpec& spec, const TaskSettings& s, std::mt19937_64& rng) {
  Plan p;
  std::set<std::string> names, values;
  for (int c = 0; c < s.vt_chains; ++c) {
    std::string value;
    do value = five_digits(rng);
    while (!values.insert(value).second);
    std::vector<double> depths;
    for (int h = 0; h <= s.vt_hops; ++h) {
      depths.push_back(c == 0 ? spec.depth + (1.0 - spec.depth) * h / (s.vt_hops + 1) : uniform_depth(rng));
    }
    std::sort(depths.begin(), depths.end());
    std::string previous;
    for (int h = 0; h <= s.vt_hops; ++h) {
      std::string name;
      do name = variable_name(rng);
      while (!names.insert(name).second);
      const std::string rhs = h == 0 ? value : "VAR " + previous;
      p.needles.push_back({"VAR " + name + " = " + rhs + ".", depths[static_cast<size_t>(h)], c == 0});
      if (c == 0) p.answers.push_back(name);
      previous = name;
    }
    if (c == 0) p.question = "Find all variables that are assigned the value " + value + " in the text above.";
  }
  return p;
}

Plan plan_task(const CaseSpec& spec, const TaskSettings& s, uint64_t seed) {
  std::mt19937_64 rng(seed);
  switch (spec.task) {
    case Task::niah_single: return plan_single(spec, s, rng, seed);
    case Task::niah_multikey: return plan_multikey(spec, s, rng, seed);
    case Task::niah_multivalue: return plan_multivalue(spec, s, rng, seed);
    case Task::niah_multiquery: return plan_multiquery(spec, s, rng, seed);
    case Task::vt: return plan_vt(spec, s, rng);
  }
  throw Exception(errc::internal, "unknown task");
}

std::string case_id(const CaseSpec& s) {
  return std::string(task_name(s.task)) + "/" + std::string(filler_name(s.haystack)) + "/" + std::to_string(s.length) +
         "/d" + std::to_string(std::llround(s.depth * 100)) + "/s" + std::to_string(s.sample);
}

}  // namespace

const std::vector<Task>& all_tasks() {
  static const std::vector<Task> tasks = [] {
    std::vector<Task> t;
    for (const auto& [task, name] : kTaskNames) t.push_back(task);
    return t;
  }();
  return tasks;
}

std::string_view task_name(Task t) {
  for (const auto& [task, name] : kTaskNames) {
    if (task == t) return name;
  }
  return "?";
}

std::optional<Task> task_from_name(std::string_view name) {
  for (const auto& [task, n] : kTaskNames) {
    if (n == name) return task;
  }
  return std::nullopt;
}

std::string_view filler_name(Filler f) { return f == Filler::noise ? "noise" : "prose"; }

std::optional<Filler> filler_from_name(std::string_view name) {
  if (name == "noise") return Filler::noise;
  if (name == "prose") return Filler::prose;
  return std::nullopt;
}

void validate(const TaskSettings& s) {
  auto need = [](bool ok, const std::string& what) {
    if (!ok) throw Exception(errc::invalid_argument, "task settings: " + what);
  };
  need(s.passkey_digits >= 1 && s.passkey_digits <= 64, "passkey_digits must be in 1..64");
  need(s.distractors >= 0 && s.distractors < kLabels, "distractors must be in 0.." + std::to_string(kLabels - 1));
  need(s.values >= 1 && s.values <= 64, "values must be in 1..64");
  need(s.queries >= 1 && s.queries <= kLabels, "queries must be in 1.." + std::to_string(kLabels));
  need(s.vt_hops >= 0 && s.vt_hops <= 64, "vt_hops must be in 0..64");
  need(s.vt_chains >= 1 && s.vt_chains <= 16, "vt_chains must be in 1..16");
}

EvalCase make_case(const model::Vocab& vocab, const CaseSpec& spec, const TaskSettings& settings, uint64_t seed) {
  validate(settings);
  if (!(spec.depth >= 0.0 && spec.depth <= 1.0)) throw Exception(errc::invalid_argument, "needle depth must be in 0..1");
  const uint64_t cs = case_seed(seed, spec);
  Plan plan = plan_task(spec, settings, cs);
  // make_haystack reports needles in text order; planting them in depth order keeps that the plan's order.
  std::stable_sort(plan.needles.begin(), plan.needles.end(),
                   [](const Planted& a, const Planted& b) { return a.depth < b.depth; });
  std::vector<Needle> needles;
  for (const Planted& n : plan.needles) needles.push_back({n.sentence, n.depth});
  Haystack hay = make_haystack(vocab, spec.length, needles, mix(cs), spec.haystack);

  EvalCase c;
  c.spec = spec;
  c.id = case_id(spec);
  c.text = std::move(hay.text);
  c.n_tokens = hay.n_tokens;
  for (size_t i = 0; i < plan.needles.size(); ++i) {
    (plan.needles[i].required ? c.required : c.distractors).push_back(hay.needle_tokens[i]);
  }
  c.question = std::move(plan.question);
  c.answers = std::move(plan.answers);
  return c;
}

}  // namespace ilre::eval
