// prefill — token chunks -> layer-l_R keys, streaming through layers 0..l_R-1 with sink + window caches.
// Every `state_every` tokens (a segment boundary) and at the end it attaches the document state
// (stages/document_state.h: the streaming caches, plus at the end the open stream's tail), so the store
// can persist a resumable state with each complete segment.
#pragma once

#include <optional>
#include <string_view>

#include "engine/stage.h"
#include "stages/messages.h"
#include "stages/streaming_prefill.h"

namespace ilre::stages {

class PrefillStage {
 public:
  using In = TokenChunk;
  using Out = KeyBlock;
  static constexpr std::string_view kName = "prefill";

  // prefill continues from `state` when appending to a store (empty: a new document).
  PrefillStage(const model::Model& model, model::ComputePool& pool, PrefillSettings settings, int64_t state_every,
               std::vector<uint8_t> state = {});
  Result<void> start(engine::StageContext& ctx);
  Result<void> process(TokenChunk&& in, engine::Emitter<KeyBlock>& out);
  Result<void> finish(engine::Emitter<KeyBlock>& out);

  int64_t next_position() const { return prefill_.next_position(); }

 private:
  StreamingPrefill prefill_;
  int64_t state_every_;
  std::optional<StreamTail> tail_;  // from the tokenizer's last message when the document stays open
  engine::StageContext* ctx_ = nullptr;
};

}  // namespace ilre::stages
