// score — the source of an ask: reads the store segment by segment and scores every context token by the
// attention the query pays it at layer l_R (retrieval/scoring.h). Softmax needs two passes over the keys:
// pass 1 (max and sum per query head and token) emits nothing, pass 2 emits one ScoreBlock per segment.
// Memory is one decoded segment at a time, never the whole store.
#pragma once

#include <functional>
#include <span>
#include <string_view>

#include "engine/stage.h"
#include "retrieval/scoring.h"
#include "stages/messages.h"
#include "storage/store_reader.h"

namespace ilre::stages {

struct ScoreTotals {
  int64_t keys_read = 0;        // keys decoded (both passes)
  uint64_t raw_key_bytes = 0;   // of those keys, uncompressed in the store dtype
  double read_seconds = 0;      // checksum + zstd + conversion to F32
  double score_seconds = 0;     // the GEMMs and softmax
};

class ScoreStage {
 public:
  using Out = ScoreBlock;
  static constexpr std::string_view kName = "score";

  // key_transform, when set, adjusts a decoded segment's keys in place before scoring (e.g. applies RoPE
  // at the keys' document positions); it gets the segment's first position, n and F32 [n, width] keys.
  using KeyTransform = std::function<void(int64_t first_pos, int64_t n, float* keys)>;
  // score_transform, when set, adjusts a block's scores before they are emitted (e.g. recall.policy =
  // hybrid's lexical prior); it gets the block's first position and its scores.
  using ScoreTransform = std::function<void(int64_t first_pos, std::span<float> scores)>;
  ScoreStage(const storage::StoreReader& store, retrieval::QueryScorer scorer, KeyTransform key_transform = {},
             ScoreTransform score_transform = {});
  Result<void> start(engine::StageContext& ctx);
  Result<bool> produce(engine::Emitter<ScoreBlock>& out);
  const ScoreTotals& totals() const { return totals_; }

 private:
  Result<void> load(size_t i);

  const storage::StoreReader& store_;
  retrieval::QueryScorer scorer_;
  KeyTransform key_transform_;
  ScoreTransform score_transform_;
  size_t next_ = 0;
  bool scoring_pass_;
  storage::Segment segment_;
  ScoreTotals totals_;
  engine::StageContext* ctx_ = nullptr;
};

}  // namespace ilre::stages
