// The recall methods compared by `ilre eval`: one registry of selection policies run by the same engine, on
// the same model, the same streaming prefill and the same token budget. A policy only scores tokens (or not
// at all); the shared base turns scores into a budgeted selection with retrieval::select_tokens, so every
// method keeps the same sink and recalls exactly min(budget, document) tokens.
//
//   ilre          ILRe (arXiv 2508.17892): the configured scorer + multi-kernel max pooling, as `ilre ask`.
//   ilre-1kernel  ablation: the same scores, one max-pooling kernel taking the whole budget.
//   snapkv        SnapKV (arXiv 2404.14469): softmax attention of the observation window (the query tokens),
//                 summed over heads and window, avg-pooled with one kernel, top-k.
//   gemfilter     GemFilter (arXiv 2409.17422): raw q·k of the last query token summed over heads,
//                 avg-pooled (the released code's kernel 5), top-k.
//   lagkv         LagKV (arXiv 2504.04704): query-free; keys normalised by the next partition's min/max,
//                 std over channels, softmax per partition; equal keep ratio per partition.
//   streaming     StreamingLLM (arXiv 2309.17453): sink + the most recent tokens, no scoring.
//   full          the whole document with the full model (only where it fits the trained context).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "ilre/config.h"
#include "model/hparams.h"
#include "retrieval/lexical.h"
#include "retrieval/scoring.h"

namespace ilre::eval {

// What one case's shared streaming prefill hands every method.
struct MethodInputs {
  int64_t n_doc = 0;
  // F32 [n_doc, n_head_kv*head_dim]: layer-l_R keys as the scorers see them (pre-RoPE unless
  // scoring.positions = absolute, then rotated to their document positions).
  std::span<const float> keys;
  // F32 [n_query, n_head*head_dim]: the query tokens (question + answer prefix) at layer l_R, same positions
  // treatment as the keys.
  std::span<const float> queries;
  int64_t n_query = 0;
  retrieval::HeadLayout layout;
  int64_t budget = 0;  // tokens recalled, the sink included
  int64_t sink = 0;    // first document tokens every method keeps
  // The document and the bare question (no template) as token ids, for recall.policy = hybrid's lexical
  // prior; words maps their ids to words (one map per model, shared by the cases).
  std::span<const int32_t> doc_tokens{};
  std::span<const int32_t> question_tokens{};
  retrieval::WordMap* words = nullptr;
  // queries[question_begin, question_end): the question's own rows (scoring.query = question).
  int64_t question_begin = 0;
  int64_t question_end = 0;
  // Other layers' keys and queries (same shapes) whose attention scores ilre adds to this layer's before
  // the lexical prior and the pooling: the qa_real probe's layer combinations. Other methods ignore them.
  struct Layer {
    std::span<const float> keys;
    std::span<const float> queries;
  };
  std::span<const Layer> more_layers{};
};

// Knobs of the baselines (defaults: the published code's, see each policy).
struct MethodOptions {
  int32_t ilre_1kernel = 7;   // ilre-1kernel: the single max-pooling kernel
  int32_t snapkv_kernel = 7;  // SnapKV's avg-pool kernel (KVCache-Factory scripts use 7; SnapKV config 5)
  int32_t gemfilter_kernel = 5;  // GemFilter's standard_dis_index(pool=True, kernel_size=5); 1 = no pooling
  int64_t lagkv_lag = 128;    // LagKV partition size (kvpress and the HF cache default)
  bool lagkv_cross_scoring = false;  // false: rank-normalise per partition (equal keep ratio, as LagKV)
};

// Checks kernel sizes (odd, >= 1) and the lag (>= 2); throws Exception(invalid_argument).
void validate(const MethodOptions& o);

class Method {
 public:
  virtual ~Method() = default;
  virtual std::string_view name() const = 0;
  // Needs the layer-l_R keys and queries of the shared streaming prefill.
  virtual bool needs_prefill() const { return true; }
  // Recalls the whole document; the runner skips it where document + query + answer exceed the context.
  virtual bool full_context() const { return false; }
  // Sorted document indices to recall: exactly min(budget, n_doc) of them, the first `sink` among them.
  // relevance, when given, receives one score per index where the method ranks what it recalls (ILRe: the
  // selection score, which query.span_order=relevance orders the prompt's spans by), else stays empty.
  std::vector<int64_t> select(const MethodInputs& in, std::vector<float>* relevance = nullptr) const {
    if (relevance) relevance->clear();
    return pick(in, relevance);
  }
  // The policy's resolved settings, for the results file.
  virtual nlohmann::json settings() const = 0;

 private:
  virtual std::vector<int64_t> pick(const MethodInputs& in, std::vector<float>* relevance) const = 0;
};

// Every method name, in report order.
const std::vector<std::string>& method_names();
// Throws Exception(invalid_argument) naming the known methods for an unknown name.
std::unique_ptr<Method> make_method(std::string_view name, const Config& cfg, const model::HParams& hp,
                                    const MethodOptions& options);

// ---- building blocks (exposed for the tests) ----

// PyTorch avg_pool1d(kernel, stride 1, padding kernel/2, count_include_pad): out-of-range positions count
// as zeros, every window divides by kernel — as SnapKV and GemFilter call it.
std::vector<float> avg_pool(std::span<const float> scores, int32_t kernel);

// The shared base: the top `budget` scores, the first keep_first and last keep_last tokens always kept.
std::vector<int64_t> top_k(std::span<const float> scores, int64_t budget, int64_t keep_first, int64_t keep_last = 0);

// Attention scores of the given query rows over all keys with a QueryScorer (two passes when softmax).
std::vector<float> attention_scores(const MethodInputs& in, std::span<const float> q, int64_t n_q,
                                    const retrieval::ScoreConfig& cfg);

// LagKV scores of keys F32 [n, n_head_kv*head_dim] (see lagkv in the table above). Partitions of `lag`
// tokens start after the sink; the last full partition and the remainder have no reference partition and
// form the tail, which LagKV keeps verbatim; sink and tail score 0 here (the selection keeps them).
std::vector<float> lagkv_scores(std::span<const float> keys, int64_t n, int64_t n_head_kv, int64_t head_dim,
                                int64_t sink, int64_t lag, bool cross_scoring);
// Tokens at the end of the document LagKV keeps without scoring.
int64_t lagkv_tail(int64_t n, int64_t sink, int64_t lag);

}  // namespace ilre::eval
