// recall — recalled positions -> the compressed prompt: the recalled document tokens in their original
// order (read back from the store's token frames), the chat lead after the BOS (query.chat), then the query
// tokens; positions contiguous (default) or the original document positions (retrieval/prompt.h).
#pragma once

#include <string_view>
#include <vector>

#include "engine/stage.h"
#include "retrieval/prompt.h"
#include "stages/messages.h"
#include "storage/store_reader.h"

namespace ilre::stages {

enum class PromptPositions { contiguous, original };

class RecallStage {
 public:
  using In = Selection;
  using Out = Prompt;
  static constexpr std::string_view kName = "recall";

  // bos: the model's BOS id (-1: none), after which the lead goes; max_prompt: the prompt tokens that
  // leave room for the answer (span separators are dropped beyond it; < 0: no limit).
  RecallStage(const storage::StoreReader& store, retrieval::QueryPrompt query, PromptPositions positions,
              model::TokenId bos, int64_t max_prompt = -1);
  Result<void> start(engine::StageContext& ctx);
  Result<void> process(Selection&& in, engine::Emitter<Prompt>& out);

  // What was recalled (valid after the run): [start, end) document ranges and their token count.
  const std::vector<std::pair<int64_t, int64_t>>& spans() const { return spans_; }
  int64_t n_recalled() const { return n_recalled_; }

 private:
  std::vector<std::pair<int64_t, int64_t>> spans_;
  int64_t n_recalled_ = 0;
  const storage::StoreReader& store_;
  retrieval::QueryPrompt query_;
  PromptPositions positions_;
  model::TokenId bos_;
  int64_t max_prompt_;
  engine::StageContext* ctx_ = nullptr;
};

// [start, end) runs of consecutive positions.
std::vector<std::pair<int64_t, int64_t>> spans_of(const std::vector<int64_t>& sorted_positions);

}  // namespace ilre::stages
