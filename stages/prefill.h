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

// One shard of a sharded ingest: keys only for the positions [begin, end), bit-identical to those of a
// sequential ingest of the whole document. The stage still sees every chunk of the document: it streams the
// chunks holding the sink, jumps (StreamingPrefill::jump_to) to receptive_field() tokens before `begin`,
// streams those without keeping keys, and drops everything after `end`. begin and end are chunk boundaries
// (end may also be the document's end).
struct ShardRange {
  int64_t begin = 0;
  int64_t end = 0;
};

class PrefillStage {
 public:
  using In = TokenChunk;
  using Out = KeyBlock;
  static constexpr std::string_view kName = "prefill";

  // prefill continues from `state` when appending to a store (empty: a new document).
  PrefillStage(const model::Model& model, model::ComputePool& pool, PrefillSettings settings, int64_t state_every,
               std::vector<uint8_t> state = {});
  // A shard of a new document.
  PrefillStage(const model::Model& model, model::ComputePool& pool, PrefillSettings settings, int64_t state_every,
               ShardRange shard);
  Result<void> start(engine::StageContext& ctx);
  Result<void> process(TokenChunk&& in, engine::Emitter<KeyBlock>& out);
  Result<void> finish(engine::Emitter<KeyBlock>& out);

  int64_t next_position() const { return prefill_.next_position(); }

 private:
  // Shard mode: false when the chunk is not one of the shard's (after advancing over it or dropping it).
  bool shard_keeps(const TokenChunk& in);

  StreamingPrefill prefill_;
  int64_t state_every_;
  std::optional<StreamTail> tail_;  // from the tokenizer's last message when the document stays open
  engine::StageContext* ctx_ = nullptr;
  std::optional<ShardRange> shard_;
  int64_t sink_end_ = 0;    // shard mode: the sink lies in the chunks before this position
  int64_t warm_begin_ = 0;  // shard mode: streaming resumes here, receptive_field() before shard_->begin
};

}  // namespace ilre::stages
