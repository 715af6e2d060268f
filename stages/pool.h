// pool — per-token scores -> the recalled positions: multi-kernel max pooling with budget shares and the
// budgeted selection (retrieval/pooling.h), in O(kernels x budget) memory for any document length.
#pragma once

#include <optional>
#include <string_view>

#include "engine/stage.h"
#include "retrieval/pooling.h"
#include "stages/messages.h"

namespace ilre::stages {

class PoolStage {
 public:
  using In = ScoreBlock;
  using Out = Selection;
  static constexpr std::string_view kName = "pool";

  explicit PoolStage(retrieval::SelectionConfig cfg);
  Result<void> start(engine::StageContext& ctx);
  Result<void> process(ScoreBlock&& in, engine::Emitter<Selection>& out);
  Result<void> finish(engine::Emitter<Selection>& out);

 private:
  retrieval::StreamingSelector selector_;
  int64_t expected_pos_ = 0;
  engine::StageContext* ctx_ = nullptr;
};

}  // namespace ilre::stages
