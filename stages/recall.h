// recall — recalled positions -> the compressed prompt: the recalled document tokens in their original
// order (read back from the store's token frames), then the query tokens; positions contiguous (default)
// or the original document positions.
#pragma once

#include <string_view>
#include <vector>

#include "engine/stage.h"
#include "stages/messages.h"
#include "storage/store_reader.h"

namespace ilre::stages {

enum class PromptPositions { contiguous, original };

class RecallStage {
 public:
  using In = Selection;
  using Out = Prompt;
  static constexpr std::string_view kName = "recall";

  RecallStage(const storage::StoreReader& store, std::vector<model::TokenId> query_tokens, PromptPositions positions);
  Result<void> start(engine::StageContext& ctx);
  Result<void> process(Selection&& in, engine::Emitter<Prompt>& out);

  // What was recalled (valid after the run): [start, end) document ranges and their token count.
  const std::vector<std::pair<int64_t, int64_t>>& spans() const { return spans_; }
  int64_t n_recalled() const { return n_recalled_; }

 private:
  std::vector<std::pair<int64_t, int64_t>> spans_;
  int64_t n_recalled_ = 0;
  const storage::StoreReader& store_;
  std::vector<model::TokenId> query_;
  PromptPositions positions_;
  engine::StageContext* ctx_ = nullptr;
};

// [start, end) runs of consecutive positions.
std::vector<std::pair<int64_t, int64_t>> spans_of(const std::vector<int64_t>& sorted_positions);

}  // namespace ilre::stages
