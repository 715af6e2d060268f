// The two halves every evaluation case shares, so the synthetic and the real-document suites score and
// answer exactly as `ilre ask` does: layer-l_R keys and queries as the scorers see them (rounded like the
// store, rotated when scoring.positions = absolute), and the greedy final pass over a compressed prompt.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ilre/config.h"
#include "model/kernels/compute_pool.h"
#include "model/model.h"
#include "model/session.h"
#include "model/transformer.h"
#include "retrieval/prompt.h"
#include "stages/decode.h"
#include "stages/streaming_prefill.h"

namespace ilre::eval {

// Names were checked by Config::validate().
model::Numerics numerics_of(const std::string& name);

// `ilre ask` scores the keys it reads back from the store, rounded to store.key_dtype (f16 | bf16); every
// method here scores those same values.
void round_like_store(std::span<float> keys, const std::string& dtype);

// The streaming settings `ilre ask` would ingest with, clamped into the model's context.
stages::PrefillSettings eval_prefill_settings(const Config& cfg, int32_t layer, const model::HParams& hp);
// The always-kept count `ilre ask` uses: recall.keep_first, else the (clamped) prefill sink.
int64_t always_kept(const Config& cfg, const stages::PrefillSettings& s);

// The streaming prefill of one document to l_R; afterwards keys() holds F32 [n_doc, n_head_kv*head_dim] and
// queries() encodes any number of questions against the same end-of-document state.
class PrefillKeys {
 public:
  PrefillKeys(const model::Model& model, model::ComputePool& pool, const Config& cfg, stages::PrefillSettings settings);
  void run(std::span<const model::TokenId> doc);
  // F32 [n_query, n_head*head_dim]: the query tokens at l_R as if they followed the document.
  std::vector<float> queries(std::span<const model::TokenId> query);
  const std::vector<float>& keys() const { return keys_; }
  std::vector<float> take_keys() { return std::move(keys_); }

 private:
  const model::Model& model_;
  const Config& cfg_;
  stages::StreamingPrefill prefill_;
  model::Forward rope_;
  std::vector<float> keys_;
  int64_t n_doc_ = 0;
};

struct FinalPass {
  std::string text;
  int64_t generated = 0;
  double ttft_ms = 0.0;   // start of the pass -> first generated token
  double total_ms = 0.0;  // the whole pass, decoding included
  bool dca = false;       // the pass ran with dual chunk attention
};

// Greedy decoding from a prompt (every method is compared on its most likely answer); the answer is its
// first line when stop_at_newline.
class Answerer {
 public:
  Answerer(const model::Model& model, model::ComputePool& pool, const Config& cfg, int64_t batch,
           int32_t max_tokens, bool stop_at_newline);
  // positions empty: contiguous 0..prompt-1; else one per prompt token.
  FinalPass run(const std::vector<model::TokenId>& prompt, const std::vector<int32_t>& positions = {});
  // The compressed prompt `ilre ask` would build from the document tokens at the sorted positions idx
  // (decode.positions, query.chat and query.span_order as configured; relevance: one selection score per
  // index, or empty); prompt_tokens gets its length.
  FinalPass run_recalled(std::span<const model::TokenId> doc, const std::vector<int64_t>& idx,
                         const retrieval::QueryPrompt& query, int64_t* prompt_tokens = nullptr,
                         std::span<const float> relevance = {});
  // Tokens a final pass may hold (prompt and answer) under decode.dca / decode.context.
  int64_t capacity() const;

 private:
  const model::Model& model_;
  bool original_positions_;
  model::Session session_;
  model::LongContext long_context_;
  int32_t max_tokens_;
  bool stop_at_newline_;
};

}  // namespace ilre::eval
