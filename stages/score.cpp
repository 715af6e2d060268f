#include "stages/score.h"

#include <chrono>

namespace ilre::stages {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

ScoreStage::ScoreStage(const storage::StoreReader& store, retrieval::QueryScorer scorer, KeyTransform key_transform,
                       ScoreTransform score_transform)
    : store_(store),
      scorer_(std::move(scorer)),
      key_transform_(std::move(key_transform)),
      score_transform_(std::move(score_transform)),
      scoring_pass_(!scorer_.two_pass()) {}

Result<void> ScoreStage::start(engine::StageContext& ctx) {
  ctx_ = &ctx;
  return {};
}

Result<void> ScoreStage::load(size_t i) {
  const auto t0 = std::chrono::steady_clock::now();
  if (auto r = store_.read_segment_into(i, storage::KeyFormat::f32, segment_); !r) return r;
  if (key_transform_) key_transform_(segment_.first_pos, segment_.n_tokens, segment_.keys_f32.data());
  totals_.read_seconds += seconds_since(t0);
  totals_.keys_read += segment_.n_tokens;
  totals_.raw_key_bytes += store_.segments()[i].raw_key_bytes;
  return {};
}

Result<bool> ScoreStage::produce(engine::Emitter<ScoreBlock>& out) {
  const size_t n_segments = store_.segments().size();
  if (next_ == n_segments) {
    if (scoring_pass_ || n_segments == 0) return false;
    scoring_pass_ = true;  // pass 1 done: every softmax denominator is known
    next_ = 0;
  }
  if (auto r = load(next_); !r) return tl::unexpected(r.error());
  const auto t0 = std::chrono::steady_clock::now();
  if (!scoring_pass_) {
    scorer_.observe(segment_.keys_f32.data(), segment_.n_tokens);
  } else {
    ScoreBlock block;
    block.seq = static_cast<int64_t>(next_);
    block.first_pos = segment_.first_pos;
    block.scores.resize(static_cast<size_t>(segment_.n_tokens));
    scorer_.score(segment_.keys_f32.data(), segment_.n_tokens, block.scores.data());
    if (score_transform_) score_transform_(block.first_pos, block.scores);
    if (ctx_) ctx_->add_items_out(static_cast<uint64_t>(segment_.n_tokens));
    out.emit(std::move(block));
  }
  totals_.score_seconds += seconds_since(t0);
  ++next_;
  return true;
}

}  // namespace ilre::stages
