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

RecallStage::RecallStage(const storage::StoreReader& store, std::vector<model::TokenId> query_tokens,
                         PromptPositions positions)
    : store_(store), query_(std::move(query_tokens)), positions_(positions) {}

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
  p.tokens.assign(tokens->begin(), tokens->end());
  p.tokens.insert(p.tokens.end(), query_.begin(), query_.end());
  p.positions.resize(p.tokens.size());
  for (size_t i = 0; i < p.tokens.size(); ++i) {
    if (positions_ == PromptPositions::contiguous) {
      p.positions[i] = static_cast<int32_t>(i);
    } else {
      p.positions[i] = i < in.positions.size() ? static_cast<int32_t>(in.positions[i])
                                               : static_cast<int32_t>(in.n_context + static_cast<int64_t>(i - in.positions.size()));
    }
  }
  if (ctx_) {
    ctx_->add_items_in(in.positions.size());
    ctx_->add_items_out(p.tokens.size());
  }
  out.emit(std::move(p));
  return {};
}

}  // namespace ilre::stages
