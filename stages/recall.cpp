#include "stages/recall.h"

namespace ilre::stages {

std::vector<std::pair<int64_t, int64_t>> spans_of(const std::vector<int64_t>& sorted_positions) {
  std::vector<std::pair<int64_t, int64_t>> spans;
  for (int64_t p : sorted_positions) {
    if (!spans.empty() && spans.back().second == p) {
      ++spans.back().second;
    } else {
      spans.emplace_back(p, p + 1);
    }
  }
  return spans;
}

RecallStage::RecallStage(const storage::StoreReader& store, retrieval::QueryPrompt query, PromptPositions positions,
                         model::TokenId bos, int64_t max_prompt)
    : store_(store), query_(std::move(query)), positions_(positions), bos_(bos), max_prompt_(max_prompt) {}

Result<void> RecallStage::start(engine::StageContext& ctx) {
  ctx_ = &ctx;
  return {};
}

Result<void> RecallStage::process(Selection&& in, engine::Emitter<Prompt>& out) {
  auto tokens = store_.tokens_at(in.positions);
  if (!tokens) return tl::unexpected(tokens.error());
  Prompt p;
  p.n_context = in.n_context;
  p.n_recalled = static_cast<int64_t>(tokens->size());
  p.spans = spans_of(in.positions);
  spans_ = p.spans;
  n_recalled_ = p.n_recalled;
  retrieval::CompressedPrompt cp = retrieval::compressed_prompt(*tokens, in.positions, in.n_context, query_,
                                                                positions_ == PromptPositions::original, bos_, max_prompt_,
                                                                in.relevance);
  p.tokens = std::move(cp.tokens);
  p.positions = std::move(cp.positions);
  if (ctx_) {
    ctx_->add_items_in(in.positions.size());
    ctx_->add_items_out(p.tokens.size());
  }
  out.emit(std::move(p));
  return {};
}

}  // namespace ilre::stages
