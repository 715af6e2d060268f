// Every knob of ilre in one struct tree. One YAML tree maps to it one to one (configs/reference.yaml lists
// every key with its default and why); CLI flags and ILRE_* environment variables override single keys by
// their dotted path ("recall.budget=4096"). Unknowns of the ILRe method are settings here, never constants.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ilre/error.h"
#include "ilre/export.h"

namespace ilre {

struct ModelConfig {
  std::string path;           // empty: --model / $ILRE_MODEL / models/ / tests/data/models/ lookup
  int32_t threads = 0;        // compute threads; 0 = all cores
};

// Streaming chunked prefill through layers 0..l_R-1 with a sink + window cache per layer (Λ mask).
struct PrefillConfig {
  int32_t layer = -1;         // l_R; -1 = from configs/models/<model>.yaml (calibrate), else n_layers / 4
  int64_t sink = 64;          // S: first tokens every later token attends to
  int64_t window = 1024;      // W: most recent tokens kept per layer (clamped to the trained context)
  int64_t chunk = 512;        // C: tokens per forward call
  // absolute: every token at its document position, so a late token is ~its position away from the sink.
  // cache: positions inside the rolling cache (StreamingLLM): the sink sits right before the window, and no
  // distance a streamed layer sees exceeds sink + window + chunk.
  std::string positions = "absolute";
};

struct ScoringConfig {
  bool softmax = true;              // softmax over all context keys per (query head, query token)
  std::string over_heads = "sum";   // sum | max
  // max: a context token scores by the query token that attends to it most. bench/needle_probe (Gemma 3
  // 270M, 16K tokens of varied prose, 3 needles, budget 10%): max >= sum on 16 of 18 layers (layer 1:
  // 0.93 vs 0.03 recall) because template tokens ("Question:", "Answer:") spread their attention over
  // common tokens and swamp the few question words in a sum.
  std::string over_queries = "max"; // sum | max
  // none: q·k of pre-RoPE queries and keys (content only); absolute: both rotated to their document
  // positions. Measured on Gemma 3 270M (bench/needle_probe): absolute RoPE loses a needle 4K tokens away
  // on every sliding-window layer (trained on distances < 512); without positions all layers >= 1 find it.
  std::string positions = "none";
  // Which query tokens score: all (question and the template around it, the paper's "question + answer
  // prefix") | question (the question's own tokens; the template's are still run, as their context).
  std::string query = "all";
};

struct PoolingConfig {
  // Four kernels up to 127 tokens, a quarter of the budget each: the paper's [1, 3, 7, 15, 31] recalled
  // fragments of long evidence sentences; with a 127-token kernel qa_real's evidence recall at 512 tokens
  // rose from 0.94 | 0.91 to 0.98 | 0.94 (documents alone, tune | heldout) and from 0.91 | 0.83 to
  // 0.96 | 0.92 in a 1M-token context, and the answers from 34% | 44% to 38% | 38% (bench/README.md
  // "Real documents" 7).
  std::vector<int32_t> kernels{1, 7, 31, 127};
  std::vector<double> shares{0.25, 0.25, 0.25, 0.25};  // of the budget left after always-kept tokens
  std::string mode = "pooled_topk";                     // pooled_topk | expand_center
};

struct RecallConfig {
  // Tokens recalled; -1 = 75% of the trained context minus query and answer room. 512: on qa_real (with
  // the kernels above) the 270M model answers best at 512 (37.5% of 48, the passage alone 33%) with the
  // evidence recalled >= 0.92 even in a 1M-token context, and a follow-up question on a 1M-token store
  // answers in ~3.4 s on 2 cores (bench/README.md "Real documents" 7).
  int64_t budget = 512;
  int64_t keep_first = -1;    // always-kept first tokens; -1 = prefill.sink
  int64_t keep_last = 0;      // always-kept last tokens of the document
  // attention: ILRe's layer-l_R attention scores alone | hybrid: those scores times exp(lexical_weight x the
  // question's word coverage around each token), a lexical prior computed from the stored tokens.
  // Default hybrid, weight 10: qa_real's tune questions (bench/README.md "Real documents").
  std::string policy = "hybrid";
  double lexical_weight = 10.0;  // hybrid: a token whose window holds every question word scores e^weight x
  int64_t lexical_window = 32;   // hybrid: tokens each side of a token that count as its neighbourhood
};

struct QueryConfig {
  // Text appended after the document; {question} is replaced. Its tokens are the ILRe query (question +
  // answer prefix) and they end the compressed prompt.
  std::string template_text = "\n\nQuestion: {question}\nAnswer:";
  // Wrap document + question in one user turn of the model's chat template, for instruction-tuned models.
  // Off: on the default (base) Gemma 3 270M it answered 0-9% on qa_real (bench/README.md "Real documents" 6).
  bool chat = false;
  // Text put between two recalled spans that are not adjacent in the document ("" = none, as the paper),
  // so the model does not read two distant fragments as one sentence. Left out of a prompt it would push
  // past the trained context.
  std::string span_separator;
  // Order of the recalled spans in the prompt: document (as the paper: the document's own order) |
  // relevance (the span with the best selection score last, right before the question; the document's
  // first span, which holds the BOS and the attention sink, stays first).
  std::string span_order = "document";
};

struct DecodeConfig {
  std::string positions = "contiguous";  // contiguous | original (positions of the recalled tokens)
  int32_t max_tokens = 64;               // 0: recall only (no final pass)
  // The template ends in "Answer:", so a small model answers on one line and then goes on inventing
  // "Question: ..." lines; stop at the first line break after some text (false: up to max_tokens).
  bool stop_at_newline = true;
  float temperature = 0.0f;
  int32_t top_k = 40;
  float top_p = 0.95f;
  uint64_t seed = 0;
  std::string numerics = "llama_cpp";    // llama_cpp | exact
  // K/V cache of the final pass: f16 as llama.cpp's default; f32 removes the cache's rounding (with
  // llama_cpp numerics it is llama.cpp's --cache-type-k/v f32). exact numerics always use f32.
  std::string kv_type = "f16";           // f16 | f32
  // Dual chunk attention in the full-attention layers (ChunkLlama): auto turns it on for a sequence whose
  // last position (prompt and answer) reaches past the trained context; on always; off never.
  std::string dca = "auto";              // off | auto | on
  int64_t dca_context = 0;               // context the DCA chunks are cut from; 0 = the model's trained one
  // Tokens the final pass may hold. 0: the trained context, or 8x it when DCA runs. Larger values without
  // DCA run plain RoPE past the trained window, as llama.cpp's -c does.
  int64_t context = 0;
};

struct StoreConfig {
  std::string key_dtype = "f16";         // f16 | bf16
  int32_t compression_level = 3;         // zstd level
  int64_t segment_tokens = 16384;        // tokens per on-disk segment
};

struct PipelineConfig {
  int32_t queue_capacity = 4;            // messages per mailbox
  int32_t executor_threads = 2;          // actor scheduler threads
  int64_t read_chunk_bytes = 1 << 16;    // document bytes per tokenize message
  int64_t memory_budget_mb = 1024;       // bytes in flight across pipelines
};

// Thread-safety: a plain value; the functions below are reentrant.
struct ILRE_API Config {
  ModelConfig model;
  PrefillConfig prefill;
  ScoringConfig scoring;
  PoolingConfig pooling;
  RecallConfig recall;
  QueryConfig query;
  DecodeConfig decode;
  StoreConfig store;
  PipelineConfig pipeline;

  // Checks ranges and enumerations; the error names the key ("pooling.shares must sum to 1").
  Result<void> validate() const;
};

// YAML text -> Config (unknown keys are errors, naming them); missing keys keep their defaults.
ILRE_API Result<Config> parse_config(const std::string& yaml_text, const std::string& origin = "<config>");
ILRE_API Result<Config> load_config(const std::string& path);
// Applies an "a.b=value" override (CLI --set, ILRE_* variables) to cfg. Coupled keys (pooling.kernels and
// pooling.shares) may be set one at a time, so call validate() once all overrides are applied.
ILRE_API Result<void> apply_override(Config& cfg, const std::string& assignment);
// ILRE_RECALL_BUDGET=4096 -> "recall.budget=4096" for every ILRE_<SECTION>_<KEY> variable set.
ILRE_API Result<void> apply_environment(Config& cfg);
// The resolved configuration as YAML (written beside every run's results).
ILRE_API std::string to_yaml(const Config& cfg);

}  // namespace ilre
