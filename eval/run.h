// Runs the suite for one model: per case ONE streaming prefill up to l_R (layer-l_R keys and the query's
// queries kept in memory for the case), then every method selects tokens from that same data under the same
// budget, and the full model answers from [recalled tokens in original order] + query tokens with greedy
// decoding. `full` instead answers from the whole document where it fits the trained context.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/metrics.h"
#include "eval/suite.h"
#include "eval/suite_config.h"
#include "ilre/config.h"
#include "model/kernels/compute_pool.h"
#include "model/model.h"

namespace ilre::eval {

struct MethodOutcome {
  std::string method;
  bool skipped = false;
  std::string skip_reason;         // "exceeds context"
  int64_t recalled = 0;            // document tokens in the final prompt
  double recall = 0.0;             // needle-token recall, from the recalled indices
  std::vector<int64_t> needle_hits;  // per required needle: its tokens inside the recalled set
  std::vector<TokenRange> spans;   // recalled ranges (only with save_spans)
  std::string answer;
  AnswerScore score;
  int64_t prompt_tokens = 0;       // recalled + query
  int64_t generated = 0;
  double select_ms = 0.0;          // this method's scoring and selection
  double ttft_ms = 0.0;            // start of the final pass -> first generated token
  double end_to_end_ms = 0.0;      // shared prefill (if the method uses it) + select_ms + ttft_ms
  double answer_ms = 0.0;          // the whole final pass, decoding included
  double peak_rss_mb = 0.0;        // the process's high-water mark after this method (getrusage)
  bool dca = false;                // the final pass ran with dual chunk attention
};

struct CaseOutcome {
  CaseSpec spec;
  std::string id;
  int64_t n_tokens = 0;     // document tokens
  int64_t n_query = 0;      // query tokens (question + answer prefix)
  int64_t budget = 0;       // tokens every method recalled (sink included)
  bool budget_clamped = false;  // lowered so budget + query + answer fit the final pass's context
  std::string question;
  std::vector<std::string> answers;
  std::vector<TokenRange> required;
  std::vector<TokenRange> distractors;
  double prefill_ms = 0.0;  // shared streaming prefill to l_R + query encoding; 0 when no method needs it
  std::vector<MethodOutcome> methods;
};

struct ModelRun {
  std::string name;
  std::string path;
  std::string fingerprint;
  std::string summary;       // architecture line
  int64_t n_ctx_train = 0;
  int32_t layer = -1;        // l_R
  int64_t sink = 0;          // tokens every method keeps
  std::string config_yaml;   // the resolved ilre Config
  EvalSettings settings;
  nlohmann::json method_settings;  // per method: its resolved knobs
  std::vector<CaseOutcome> cases;
  double seconds = 0.0;
};

struct RunProgress {
  int64_t done = 0;
  int64_t total = 0;
  double elapsed_s = 0.0;
  double eta_s = 0.0;        // from the tokens still to process at the rate so far
  const CaseOutcome* last = nullptr;
};
using RunProgressFn = std::function<void(const RunProgress&)>;

// The grid in run order: lengths ascending (early results come cheap), then depths, tasks, haystacks, samples.
std::vector<CaseSpec> case_grid(const EvalSettings& s);

// The l_R `ilre ask` would use (prefill.layer, else the calibrated configs/models/<model>.yaml, else
// n_layer/4): the engine's own rule, so the evaluation cannot drift from it.
int32_t resolve_layer(const Config& cfg);

// Loads cfg.model.path, resolves l_R exactly as `ilre ask` does (prefill.layer, else the calibrated
// configs/models/<model>.yaml, else n_layer/4) and runs every case of entry.settings.
ModelRun run_model(const ModelEntry& entry, const Config& cfg, const RunProgressFn& progress = {});

// The same with a loaded model and a given layer.
ModelRun run_suite(const model::Model& model, model::ComputePool& pool, const Config& cfg, int32_t layer,
                   const ModelEntry& entry, const RunProgressFn& progress = {});

// "[3/40] niah_single/noise/4096/d50/s0 4120 tok, prefill 0.8 s | ilre r=1.00 acc=1 ... | ETA 2m05s"
std::string progress_line(const RunProgress& p);

}  // namespace ilre::eval
