// tokenize — document bytes -> token chunks of the prefill chunk size, streaming-safe: the ids equal those
// of tokenising the whole document at once (model/tokenizer/vocab.h StreamingTokenizer).
#pragma once

#include <deque>
#include <memory>
#include <optional>
#include <string_view>

#include "engine/stage.h"
#include "model/tokenizer/vocab.h"
#include "stages/messages.h"

namespace ilre::stages {

class TokenizeStage {
 public:
  using In = DocBytes;
  using Out = TokenChunk;
  static constexpr std::string_view kName = "tokenize";

  // first_pos: document position of the first token (non-zero when appending to a store).
  // add_bos: whether this stream starts a document (BOS as the model's metadata says).
  // resume: the tail an earlier append left (its held-back text and tokens continue this stream).
  // keep_open: at the end of the input, keep the tail for a later append instead of finishing the document:
  //   only whole chunks go to the prefill, and the last message carries the tail.
  TokenizeStage(std::shared_ptr<const model::Vocab> vocab, int64_t chunk_tokens, int64_t first_pos, bool add_bos,
                std::optional<StreamTail> resume = std::nullopt, bool keep_open = false);
  Result<void> start(engine::StageContext& ctx);
  Result<void> process(DocBytes&& in, engine::Emitter<TokenChunk>& out);
  Result<bool> produce(engine::Emitter<TokenChunk>& out);
  Result<void> finish(engine::Emitter<TokenChunk>& out);

  int64_t tokens_out() const { return next_pos_ - first_pos_; }
  uint64_t replaced_bytes() const { return tokenizer_.replaced_bytes(); }
  uint64_t forced_cuts() const { return tokenizer_.forced_cuts(); }

 private:
  bool take_chunk(engine::Emitter<TokenChunk>& out, bool partial_ok);

  model::StreamingTokenizer tokenizer_;
  int64_t chunk_;
  int64_t first_pos_;
  int64_t next_pos_;
  int64_t seq_ = 0;
  bool ended_ = false;
  bool keep_open_ = false;
  bool tail_sent_ = false;
  std::deque<model::TokenId> buffer_;  // at most one chunk plus one input's worth of tokens
  engine::StageContext* ctx_ = nullptr;
};

}  // namespace ilre::stages
