#include "stages/score.h"

#include <algorithm>
#include <chrono>

namespace ilre::stages {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

retrieval::KeyBlock key_block(const storage::Segment& seg) {
  using Type = retrieval::KeyBlock::Type;
  const bool channel_major = seg.layout == storage::KeyLayout::channel_major;
  if (seg.format == storage::KeyFormat::f32) {
    return {.data = seg.keys_f32.data(), .n = seg.n_tokens, .type = Type::f32, .channel_major = channel_major};
  }
  return {.data = seg.keys_16.data(), .n = seg.n_tokens, .type = seg.format == storage::KeyFormat::f16 ? Type::f16 : Type::bf16,
          .channel_major = channel_major};
}

}  // namespace

ScoreStage::ScoreStage(const storage::StoreReader& store, retrieval::QueryScorer scorer, KeyTransform key_transform,
                       ScoreTransform score_transform, model::ComputePool* pool)
    : store_(store),
      scorer_(std::move(scorer)),
      key_transform_(std::move(key_transform)),
      score_transform_(std::move(score_transform)),
      pool_(pool),
      scoring_pass_(!scorer_.two_pass()),
      slots_(static_cast<size_t>(pool ? std::max(1, pool->size()) : 1)) {}

Result<void> ScoreStage::start(engine::StageContext& ctx) {
  ctx_ = &ctx;
  return {};
}

Result<void> ScoreStage::load(size_t segment, Slot& slot) const {
  // Channel-shuffled segments are scored in their own 16-bit dtype, channel-major: no transpose and no F32
  // copy of the segment. The key transform works on F32 token-major rows.
  if (!key_transform_ && store_.segments()[segment].shuffle == storage::Shuffle::channel_bytes) {
    const storage::KeyFormat own = store_.meta().dtype == storage::KeyDtype::f16 ? storage::KeyFormat::f16 : storage::KeyFormat::bf16;
    return store_.read_segment_into(segment, own, slot.segment, storage::KeyLayout::channel_major);
  }
  return store_.read_segment_into(segment, storage::KeyFormat::f32, slot.segment);
}

void ScoreStage::each_slot(size_t count, const std::function<void(Slot& slot, size_t segment)>& fn) {
  auto body = [&](int ith, int nth) {
    for (auto s = static_cast<size_t>(ith); s < count; s += static_cast<size_t>(nth)) fn(slots_[s], next_ + s);
  };
  if (pool_ != nullptr && count > 1) {
    pool_->run(body);
  } else {
    body(0, 1);
  }
}

Result<void> ScoreStage::run_batch(size_t count) {
  // Read and decompress on every thread; the key transform (which may use the pool) between; then score.
  each_slot(count, [this](Slot& slot, size_t segment) {
    const auto t0 = std::chrono::steady_clock::now();
    slot.status = load(segment, slot);
    slot.read_seconds = seconds_since(t0);
  });
  for (size_t s = 0; s < count; ++s) {
    Slot& slot = slots_[s];
    if (!slot.status) return slot.status;
    totals_.read_seconds += slot.read_seconds;
    totals_.keys_read += slot.segment.n_tokens;
    totals_.raw_key_bytes += store_.segments()[next_ + s].raw_key_bytes;
    if (key_transform_) key_transform_(slot.segment.first_pos, slot.segment.n_tokens, slot.segment.keys_f32.data());
  }
  const bool scoring = scoring_pass_;
  each_slot(count, [this, scoring](Slot& slot, size_t segment) {
    const auto t0 = std::chrono::steady_clock::now();
    const storage::Segment& seg = slot.segment;
    const retrieval::KeyBlock keys = key_block(seg);
    if (!scoring) {
      slot.stats = scorer_.empty_stats();
      scorer_.observe(keys, slot.stats);
    } else {
      slot.block = ScoreBlock{};
      slot.block.seq = static_cast<int64_t>(segment);
      slot.block.first_pos = seg.first_pos;
      slot.block.scores.resize(static_cast<size_t>(seg.n_tokens));
      scorer_.score(keys, slot.block.scores.data());
    }
    slot.score_seconds = seconds_since(t0);
  });
  for (size_t s = 0; s < count; ++s) {
    Slot& slot = slots_[s];
    totals_.score_seconds += slot.score_seconds;
    if (!scoring) {
      scorer_.absorb(slot.stats);  // in segment order: the same bits on any number of threads
    } else {
      if (score_transform_) score_transform_(slot.block.first_pos, slot.block.scores);
      if (ctx_) ctx_->add_items_out(static_cast<uint64_t>(slot.block.scores.size()));
      ready_.push_back(std::move(slot.block));
    }
  }
  next_ += count;
  return {};
}

Result<bool> ScoreStage::produce(engine::Emitter<ScoreBlock>& out) {
  if (!ready_.empty()) {
    out.emit(std::move(ready_.front()));
    ready_.pop_front();
    return true;
  }
  const size_t n_segments = store_.segments().size();
  if (next_ == n_segments) {
    if (scoring_pass_ || n_segments == 0) return false;
    scoring_pass_ = true;  // pass 1 done: every softmax denominator is known
    next_ = 0;
  }
  if (auto r = run_batch(std::min(slots_.size(), n_segments - next_)); !r) return tl::unexpected(r.error());
  return true;
}

}  // namespace ilre::stages
