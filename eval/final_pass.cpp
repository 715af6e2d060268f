#include "eval/final_pass.h"

#include <chrono>
#include <numeric>

#include "model/kernels/quant.h"

namespace ilre::eval {
namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

}  // namespace

void round_like_store(std::span<float> keys, const std::string& dtype) {
  for (float& k : keys) {
    k = dtype == "bf16" ? model::bf16_to_fp32(model::fp32_to_bf16(k)) : model::fp16_to_fp32(model::fp32_to_fp16(k));
  }
}

model::Numerics numerics_of(const std::string& name) {
  return model::numerics_from_name(name).value_or(model::Numerics::llama_cpp);
}

stages::PrefillSettings eval_prefill_settings(const Config& cfg, int32_t layer, const model::HParams& hp) {
  return stages::PrefillSettings{.layer = layer,
                                 .sink = cfg.prefill.sink,
                                 .window = cfg.prefill.window,
                                 .chunk = cfg.prefill.chunk,
                                 .numerics = numerics_of(cfg.decode.numerics),
                                 .positions = stages::prefill_positions_from_name(cfg.prefill.positions)
                                                  .value_or(stages::PrefillPositions::absolute)}
      .clamped(hp);
}

int64_t always_kept(const Config& cfg, const stages::PrefillSettings& s) {
  return cfg.recall.keep_first >= 0 ? cfg.recall.keep_first : s.sink;
}

PrefillKeys::PrefillKeys(const model::Model& model, model::ComputePool& pool, const Config& cfg,
                         stages::PrefillSettings settings)
    : model_(model), cfg_(cfg), prefill_(model, pool, settings), rope_(model, pool, numerics_of(cfg.decode.numerics)) {}

void PrefillKeys::run(std::span<const model::TokenId> doc) {
  const model::HParams& hp = model_.hparams();
  const size_t at = keys_.size();
  keys_.reserve(at + doc.size() * static_cast<size_t>(hp.n_embd_k()));
  prefill_.run(doc, keys_);
  const std::span<float> added(keys_.data() + at, keys_.size() - at);
  round_like_store(added, cfg_.store.key_dtype);
  if (cfg_.scoring.positions == "absolute") {
    // As ask does for positions = absolute: keys rotated to their document positions.
    std::vector<int32_t> pos(doc.size());
    std::iota(pos.begin(), pos.end(), static_cast<int32_t>(n_doc_));
    rope_.apply_rope(prefill_.settings().layer, added.data(), hp.n_head_kv, pos);
  }
  n_doc_ += static_cast<int64_t>(doc.size());
}

std::vector<float> PrefillKeys::queries(std::span<const model::TokenId> query) {
  std::vector<float> q = prefill_.encode_query(query);
  if (cfg_.scoring.positions == "absolute") {
    std::vector<int32_t> pos(query.size());  // the query right after the document
    std::iota(pos.begin(), pos.end(), static_cast<int32_t>(n_doc_));
    rope_.apply_rope(prefill_.settings().layer, q.data(), model_.hparams().n_head, pos);
  }
  return q;
}

Answerer::Answerer(const model::Model& model, model::ComputePool& pool, const Config& cfg, int64_t batch,
                   int32_t max_tokens, bool stop_at_newline)
    : model_(model),
      original_positions_(cfg.decode.positions == "original"),
      session_(model, pool, batch, numerics_of(cfg.decode.numerics), model::kv_type_from_name(cfg.decode.kv_type)),
      long_context_(stages::long_context_of(cfg.decode)),
      max_tokens_(max_tokens),
      stop_at_newline_(stop_at_newline) {}

int64_t Answerer::capacity() const { return model::sequence_capacity(long_context_, model_.hparams().n_ctx_train); }

FinalPass Answerer::run(const std::vector<model::TokenId>& prompt, const std::vector<int32_t>& positions) {
  FinalPass f;
  f.ttft_ms = -1.0;
  session_.reset();
  const int64_t last = positions.empty() ? static_cast<int64_t>(prompt.size()) - 1 : positions.back();
  session_.configure(long_context_, last + max_tokens_);
  f.dca = session_.dca().has_value();
  const auto t0 = Clock::now();
  model::GenerateOptions go;
  go.max_tokens = max_tokens_;
  go.sampler = model::SamplerParams{};  // greedy
  go.on_token = [&](model::TokenId id) {
    if (f.ttft_ms < 0) f.ttft_ms = ms_since(t0);
    const std::string piece = model_.vocab().token_to_piece(id);
    const bool had_text = f.text.find_first_not_of(" \t\r\n") != std::string::npos;
    f.text += piece;
    // The answer is the first line; stopping there saves decoding that no metric reads.
    return !(stop_at_newline_ && had_text && piece.find('\n') != std::string::npos);
  };
  std::vector<model::TokenId> ids;
  if (positions.empty()) {
    ids = session_.generate(prompt, go);
  } else {
    std::vector<float> logits;
    session_.eval_at(prompt, positions, logits);
    ids = session_.generate({}, go);
  }
  f.total_ms = ms_since(t0);
  if (f.ttft_ms < 0) f.ttft_ms = f.total_ms;  // the first token was end-of-generation
  f.generated = static_cast<int64_t>(ids.size());
  return f;
}

FinalPass Answerer::run_recalled(std::span<const model::TokenId> doc, const std::vector<int64_t>& idx,
                                 const retrieval::QueryPrompt& query, int64_t* prompt_tokens,
                                 std::span<const float> relevance) {
  std::vector<model::TokenId> recalled;
  recalled.reserve(idx.size());
  for (int64_t i : idx) recalled.push_back(doc[static_cast<size_t>(i)]);
  const model::Vocab& vocab = model_.vocab();
  retrieval::CompressedPrompt p = retrieval::compressed_prompt(recalled, idx, static_cast<int64_t>(doc.size()), query,
                                                               original_positions_, vocab.add_bos() ? vocab.bos() : -1,
                                                               capacity() - max_tokens_, relevance);
  if (prompt_tokens) *prompt_tokens = static_cast<int64_t>(p.tokens.size());
  // Contiguous positions are the plain path's own 0..n-1.
  return original_positions_ ? run(p.tokens, p.positions) : run(p.tokens);
}

}  // namespace ilre::eval
