#include "stages/pool.h"

namespace ilre::stages {

PoolStage::PoolStage(retrieval::SelectionConfig cfg) : selector_(std::move(cfg)) {}

Result<void> PoolStage::start(engine::StageContext& ctx) {
  ctx_ = &ctx;
  return {};
}

Result<void> PoolStage::process(ScoreBlock&& in, engine::Emitter<Selection>&) {
  if (in.first_pos != expected_pos_) {
    return make_error(errc::internal, "pool expected scores from position " + std::to_string(expected_pos_) +
                                          ", got " + std::to_string(in.first_pos));
  }
  selector_.add(in.scores);
  expected_pos_ += static_cast<int64_t>(in.scores.size());
  if (ctx_) ctx_->add_items_in(in.scores.size());
  return {};
}

Result<void> PoolStage::finish(engine::Emitter<Selection>& out) {
  Selection sel;
  sel.n_context = selector_.consumed();
  sel.positions = selector_.finish(&sel.relevance);
  if (ctx_) ctx_->add_items_out(sel.positions.size());
  out.emit(std::move(sel));
  return {};
}

}  // namespace ilre::stages
