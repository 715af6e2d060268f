#include "eval/run.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <span>

#include "eval/final_pass.h"
#include "eval/methods.h"
#include "ilre/engine.h"
#include "ilre/error.h"
#include "model/gguf/model_path.h"
#include "retrieval/configure.h"
#include "retrieval/prompt.h"
#include "stages/recall.h"
#include "stages/streaming_prefill.h"

namespace ilre::eval {
namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;  // Linux reports KiB
}

// The layer-l_R data of one case, shared by every method that scores.
struct SharedPrefill {
  std::vector<float> keys;     // F32 [n_doc, n_head_kv*head_dim]
  std::vector<float> queries;  // F32 [n_query, n_head*head_dim]
  double ms = 0.0;
};

// Everything fixed for one model: methods, streaming settings, the session of the final pass.
class SuiteRunner {
 public:
  SuiteRunner(const model::Model& model, model::ComputePool& pool, const Config& cfg, int32_t layer,
              const EvalSettings& settings)
      : model_(model),
        pool_(pool),
        cfg_(cfg),
        settings_(settings),
        prefill_settings_(eval_prefill_settings(cfg, layer, model.hparams())),
        sink_(always_kept(cfg, prefill_settings_)),
        answerer_(model, pool, cfg, prefill_settings_.chunk, settings.max_answer_tokens, settings.stop_at_newline),
        words_([&model](int32_t id) { return model.vocab().token_to_piece(id); }) {
    for (const std::string& name : settings.methods) {
      methods_.push_back(make_method(name, cfg, model.hparams(), settings.method));
      needs_prefill_ = needs_prefill_ || methods_.back()->needs_prefill();
    }
  }

  int64_t sink() const { return sink_; }
  nlohmann::json method_settings() const {
    nlohmann::json j;
    for (const auto& m : methods_) j[std::string(m->name())] = m->settings();
    return j;
  }

  CaseOutcome run(const CaseSpec& spec);

 private:
  SharedPrefill prefill(const std::vector<model::TokenId>& doc, const std::vector<model::TokenId>& query);
  MethodOutcome run_method(const Method& m, const MethodInputs& in, const CaseOutcome& c,
                           const std::vector<model::TokenId>& doc, const retrieval::QueryPrompt& query,
                           double prefill_ms);
  void check_selection(const Method& m, const std::vector<int64_t>& idx, const MethodInputs& in) const;

  const model::Model& model_;
  model::ComputePool& pool_;
  const Config& cfg_;
  const EvalSettings& settings_;
  stages::PrefillSettings prefill_settings_;
  int64_t sink_;
  Answerer answerer_;
  retrieval::WordMap words_;
  std::vector<std::unique_ptr<Method>> methods_;
  bool needs_prefill_ = false;
};

SharedPrefill SuiteRunner::prefill(const std::vector<model::TokenId>& doc, const std::vector<model::TokenId>& query) {
  const auto t0 = Clock::now();
  PrefillKeys p(model_, pool_, cfg_, prefill_settings_);
  p.run(doc);
  SharedPrefill sh;
  sh.queries = p.queries(query);
  sh.keys = p.take_keys();
  sh.ms = ms_since(t0);
  return sh;
}

// The contract every policy must keep; a violation is a bug in the policy, not a result.
void SuiteRunner::check_selection(const Method& m, const std::vector<int64_t>& idx, const MethodInputs& in) const {
  const int64_t want = m.full_context() ? in.n_doc : std::min(in.budget, in.n_doc);
  bool ok = static_cast<int64_t>(idx.size()) == want && std::is_sorted(idx.begin(), idx.end()) &&
            std::adjacent_find(idx.begin(), idx.end()) == idx.end() && (idx.empty() || (idx.front() >= 0 && idx.back() < in.n_doc));
  for (int64_t i = 0; ok && i < std::min({in.sink, want, in.n_doc}); ++i) ok = idx[static_cast<size_t>(i)] == i;
  if (!ok) {
    throw Exception(errc::internal, "method " + std::string(m.name()) + " broke the selection contract (" +
                                        std::to_string(idx.size()) + " tokens for a budget of " + std::to_string(want) + ")");
  }
}

MethodOutcome SuiteRunner::run_method(const Method& m, const MethodInputs& in, const CaseOutcome& c,
                                      const std::vector<model::TokenId>& doc, const retrieval::QueryPrompt& query,
                                      double prefill_ms) {
  MethodOutcome o;
  o.method = std::string(m.name());
  const int64_t n_ctx = answerer_.capacity();
  if (m.full_context() &&
      c.n_tokens + c.n_query + static_cast<int64_t>(query.lead.size()) + settings_.max_answer_tokens > n_ctx) {
    o.skipped = true;
    o.skip_reason = "exceeds context";
    return o;
  }
  const auto t0 = Clock::now();
  std::vector<float> relevance;
  const std::vector<int64_t> idx = m.select(in, &relevance);
  o.select_ms = ms_since(t0);
  check_selection(m, idx, in);
  o.recalled = static_cast<int64_t>(idx.size());
  o.recall = needle_recall(idx, c.required);
  o.needle_hits = needle_hits(idx, c.required);
  if (settings_.save_spans) o.spans = stages::spans_of(idx);

  const FinalPass f = answerer_.run_recalled(doc, idx, query, &o.prompt_tokens, relevance);
  o.answer = f.text;
  o.generated = f.generated;
  o.dca = f.dca;
  o.score = score_answer(f.text, c.answers);
  o.ttft_ms = f.ttft_ms;
  o.answer_ms = f.total_ms;
  o.end_to_end_ms = (m.needs_prefill() ? prefill_ms : 0.0) + o.select_ms + o.ttft_ms;
  o.peak_rss_mb = peak_rss_mb();
  return o;
}

CaseOutcome SuiteRunner::run(const CaseSpec& spec) {
  const model::Vocab& vocab = model_.vocab();
  const model::HParams& hp = model_.hparams();
  EvalCase ec = make_case(vocab, spec, settings_.task, settings_.seed);
  const std::vector<model::TokenId> doc = vocab.tokenize(ec.text, {.add_special = true});
  if (static_cast<int64_t>(doc.size()) != ec.n_tokens) {
    throw Exception(errc::internal, "case " + ec.id + ": the document tokenises differently than when it was built");
  }
  const retrieval::QueryPrompt query = retrieval::query_prompt(cfg_, model_, ec.question);
  const std::vector<model::TokenId> question = vocab.tokenize(ec.question, {.add_special = false});

  CaseOutcome c;
  c.spec = spec;
  c.id = ec.id;
  c.n_tokens = ec.n_tokens;
  c.n_query = static_cast<int64_t>(query.query.size());
  // One budget for every method; the compressed prompt plus the answer must fit the final pass's context
  // (the trained one, or more under decode.dca / decode.context).
  const int64_t room = answerer_.capacity() - c.n_query - static_cast<int64_t>(query.lead.size()) - settings_.max_answer_tokens;
  if (room < 1) throw Exception(errc::invalid_argument, "case " + ec.id + ": the query and answer alone exceed the context");
  const int64_t wanted = settings_.budget.for_document(c.n_tokens);
  c.budget = std::min(wanted, room);
  c.budget_clamped = c.budget < wanted;
  c.question = ec.question;
  c.answers = ec.answers;
  c.required = ec.required;
  c.distractors = ec.distractors;

  SharedPrefill sh;
  if (needs_prefill_) sh = prefill(doc, query.query);
  c.prefill_ms = sh.ms;
  const MethodInputs in{.n_doc = c.n_tokens,
                        .keys = sh.keys,
                        .queries = sh.queries,
                        .n_query = c.n_query,
                        .layout = {hp.n_head, hp.n_head_kv, hp.head_dim_k},
                        .budget = c.budget,
                        .sink = sink_,
                        .doc_tokens = doc,
                        .question_tokens = question,
                        .words = &words_,
                        .question_begin = static_cast<int64_t>(query.question_begin),
                        .question_end = static_cast<int64_t>(query.question_end)};
  for (const auto& m : methods_) c.methods.push_back(run_method(*m, in, c, doc, query, sh.ms));
  return c;
}

std::string duration_text(double s) {
  char buf[32];
  if (s < 60) {
    std::snprintf(buf, sizeof(buf), "%.0fs", s);
  } else if (s < 3600) {
    std::snprintf(buf, sizeof(buf), "%dm%02ds", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
  } else {
    std::snprintf(buf, sizeof(buf), "%dh%02dm", static_cast<int>(s) / 3600, static_cast<int>(s) % 3600 / 60);
  }
  return buf;
}

// A case costs a fixed part (the final passes, `full` at short lengths) plus a part that grows with the
// document (prefill, scoring); fit seconds = a + b * length to the finished cases (least squares, both
// terms >= 0) and sum it over the remaining ones.
double remaining_seconds(const std::vector<std::pair<double, double>>& costs, std::span<const CaseSpec> remaining) {
  const auto n = static_cast<double>(costs.size());
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (const auto& [x, y] : costs) {
    sx += x;
    sy += y;
    sxx += x * x;
    sxy += x * y;
  }
  const double var = n * sxx - sx * sx;
  double b = var > 1e-9 * sxx * n ? std::max(0.0, (n * sxy - sx * sy) / var) : 0.0;
  double a = (sy - b * sx) / n;
  if (a < 0) {  // all of it grows with the length
    a = 0;
    b = sy / std::max(sx, 1.0);
  }
  double eta = 0;
  for (const CaseSpec& s : remaining) eta += a + b * static_cast<double>(s.length);
  return eta;
}


}  // namespace

int32_t resolve_layer(const Config& cfg) {
  if (cfg.prefill.layer >= 0) return cfg.prefill.layer;
  auto engine = Engine::open(cfg);
  if (!engine) throw Exception(engine.error());
  return (*engine)->retrieval_layer();
}

std::vector<CaseSpec> case_grid(const EvalSettings& s) {
  std::vector<int64_t> lengths = s.lengths;
  std::sort(lengths.begin(), lengths.end());
  std::vector<CaseSpec> grid;
  for (int64_t len : lengths) {
    for (double d : s.depths) {
      for (Task t : s.tasks) {
        for (Filler h : s.haystacks) {
          for (int k = 0; k < s.samples; ++k) grid.push_back({t, h, len, d, k});
        }
      }
    }
  }
  return grid;
}

ModelRun run_suite(const model::Model& model, model::ComputePool& pool, const Config& cfg, int32_t layer,
                   const ModelEntry& entry, const RunProgressFn& progress) {
  entry.settings.validate();
  const auto t0 = Clock::now();
  SuiteRunner runner(model, pool, cfg, layer, entry.settings);
  ModelRun r;
  r.name = entry.name;
  r.path = model.path();
  r.fingerprint = model.fingerprint();
  r.summary = model.hparams().summary();
  r.n_ctx_train = model.hparams().n_ctx_train;
  r.layer = layer;
  r.sink = runner.sink();
  Config resolved = cfg;
  resolved.prefill.layer = layer;  // the l_R actually used, not -1
  r.config_yaml = to_yaml(resolved);
  r.settings = entry.settings;
  r.method_settings = runner.method_settings();

  const std::vector<CaseSpec> grid = case_grid(entry.settings);
  std::vector<std::pair<double, double>> costs;  // (length, seconds) of every finished case
  for (size_t i = 0; i < grid.size(); ++i) {
    const auto t_case = Clock::now();
    r.cases.push_back(runner.run(grid[i]));
    costs.emplace_back(static_cast<double>(grid[i].length), ms_since(t_case) / 1000.0);
    if (progress) {
      RunProgress p;
      p.done = static_cast<int64_t>(i + 1);
      p.total = static_cast<int64_t>(grid.size());
      p.elapsed_s = ms_since(t0) / 1000.0;
      p.eta_s = remaining_seconds(costs, std::span(grid).subspan(i + 1));
      p.last = &r.cases.back();
      progress(p);
    }
  }
  r.seconds = ms_since(t0) / 1000.0;
  return r;
}

ModelRun run_model(const ModelEntry& entry, const Config& cfg_in, const RunProgressFn& progress) {
  Config cfg = cfg_in;
  if (cfg.model.path.empty()) cfg.model.path = entry.path;
  cfg.model.path = model::resolve_model_path(cfg.model.path);
  const int32_t layer = resolve_layer(cfg);
  const auto model = model::Model::load(cfg.model.path);
  if (layer < 0 || layer >= model->hparams().n_layer) {
    throw Exception(errc::invalid_argument, "retrieval layer " + std::to_string(layer) + " is outside 0.." +
                                                std::to_string(model->hparams().n_layer - 1));
  }
  model::ComputePool pool(cfg.model.threads);
  return run_suite(*model, pool, cfg, layer, entry, progress);
}

std::string progress_line(const RunProgress& p) {
  std::string line = "[" + std::to_string(p.done) + "/" + std::to_string(p.total) + "]";
  if (const CaseOutcome* c = p.last) {
    char buf[160];
    std::snprintf(buf, sizeof(buf), " %s %lld tok, prefill %.1f s", c->id.c_str(), static_cast<long long>(c->n_tokens),
                  c->prefill_ms / 1000.0);
    line += buf;
    for (const MethodOutcome& m : c->methods) {
      if (m.skipped) {
        line += " | " + m.method + " skipped";
      } else {
        std::snprintf(buf, sizeof(buf), " | %s r=%.2f acc=%.2f", m.method.c_str(), m.recall, m.score.score);
        line += buf;
      }
    }
  }
  line += " | elapsed " + duration_text(p.elapsed_s) + ", ETA " + duration_text(p.eta_s);
  return line;
}

}  // namespace ilre::eval
