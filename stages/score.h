// score — the source of an ask: reads the store segment by segment and scores every context token by the
// attention the query pays it at layer l_R (retrieval/scoring.h). Softmax needs two passes over the keys:
// pass 1 (max and sum per query head and token) emits nothing, pass 2 emits one ScoreBlock per segment.
//
// Nothing downstream can start before every score is known (the selection is a top-k over the whole
// document), so the stage uses the compute pool: each of its threads reads, decompresses and scores a
// segment of its own. Pass 1's statistics are merged in segment order, so the scores are the same bits on
// any number of threads. Memory is one decoded segment per thread, never the whole store.
#pragma once

#include <deque>
#include <functional>
#include <span>
#include <string_view>
#include <vector>

#include "engine/stage.h"
#include "model/kernels/compute_pool.h"
#include "retrieval/scoring.h"
#include "stages/messages.h"
#include "storage/store_reader.h"

namespace ilre::stages {

struct ScoreTotals {
  int64_t keys_read = 0;        // keys decoded (both passes)
  uint64_t raw_key_bytes = 0;   // of those keys, uncompressed in the store dtype
  double read_seconds = 0;      // checksum + zstd + conversion to F32, summed over threads
  double score_seconds = 0;     // the GEMMs and softmax, summed over threads
};

class ScoreStage {
 public:
  using Out = ScoreBlock;
  static constexpr std::string_view kName = "score";

  // key_transform, when set, adjusts a decoded segment's keys in place before scoring (e.g. applies RoPE
  // at the keys' document positions); it gets the segment's first position, n and F32 [n, width] keys. It
  // is called from the stage's own thread and may use the compute pool itself.
  using KeyTransform = std::function<void(int64_t first_pos, int64_t n, float* keys)>;
  // score_transform, when set, adjusts a block's scores before they are emitted (e.g. recall.policy =
  // hybrid's lexical prior); it gets the block's first position and its scores.
  using ScoreTransform = std::function<void(int64_t first_pos, std::span<float> scores)>;
  // pool: the threads that read and score segments (nullptr: the stage's own thread only).
  ScoreStage(const storage::StoreReader& store, retrieval::QueryScorer scorer, KeyTransform key_transform = {},
             ScoreTransform score_transform = {}, model::ComputePool* pool = nullptr);
  Result<void> start(engine::StageContext& ctx);
  Result<bool> produce(engine::Emitter<ScoreBlock>& out);
  const ScoreTotals& totals() const { return totals_; }

 private:
  // One thread's share of a batch: a decoded segment, and what it yields in the current pass.
  struct Slot {
    storage::Segment segment;
    retrieval::SoftmaxStats stats;
    ScoreBlock block;
    Result<void> status;
    double read_seconds = 0;
    double score_seconds = 0;
  };

  // Runs segments [next_, next_ + slots) through the current pass on the pool's threads.
  Result<void> run_batch(size_t count);
  Result<void> load(size_t segment, Slot& slot) const;
  void each_slot(size_t count, const std::function<void(Slot& slot, size_t segment)>& fn);

  const storage::StoreReader& store_;
  retrieval::QueryScorer scorer_;
  KeyTransform key_transform_;
  ScoreTransform score_transform_;
  model::ComputePool* pool_;
  size_t next_ = 0;
  bool scoring_pass_;
  std::vector<Slot> slots_;
  std::deque<ScoreBlock> ready_;  // pass 2's blocks of the last batch, emitted one per produce()
  ScoreTotals totals_;
  engine::StageContext* ctx_ = nullptr;
};

}  // namespace ilre::stages
