#include "stages/tokenize.h"

#include <spdlog/spdlog.h>

namespace ilre::stages {

TokenizeStage::TokenizeStage(std::shared_ptr<const model::Vocab> vocab, int64_t chunk_tokens, int64_t first_pos,
                             bool add_bos)
    : tokenizer_(std::move(vocab), {.add_special = add_bos, .parse_special = false}),
      chunk_(chunk_tokens),
      first_pos_(first_pos),
      next_pos_(first_pos) {}

Result<void> TokenizeStage::start(engine::StageContext& ctx) {
  ctx_ = &ctx;
  return {};
}

bool TokenizeStage::take_chunk(engine::Emitter<TokenChunk>& out, bool partial_ok) {
  const auto available = static_cast<int64_t>(buffer_.size());
  if (available == 0 || (!partial_ok && available < chunk_)) return false;
  TokenChunk msg;
  msg.seq = seq_++;
  msg.first_pos = next_pos_;
  const int64_t n = std::min(chunk_, available);
  msg.tokens.assign(buffer_.begin(), buffer_.begin() + n);
  buffer_.erase(buffer_.begin(), buffer_.begin() + n);
  next_pos_ += n;
  if (ctx_) ctx_->add_items_out(static_cast<uint64_t>(n));
  out.emit(std::move(msg));
  return true;
}

Result<void> TokenizeStage::process(DocBytes&& in, engine::Emitter<TokenChunk>&) {
  if (ctx_) ctx_->add_items_in(in.bytes.size());
  const std::vector<model::TokenId> ids = tokenizer_.feed(in.bytes);
  buffer_.insert(buffer_.end(), ids.begin(), ids.end());
  return {};  // produce() hands out whole chunks, one per call
}

Result<bool> TokenizeStage::produce(engine::Emitter<TokenChunk>& out) {
  take_chunk(out, ended_);
  return ended_ ? !buffer_.empty() : static_cast<int64_t>(buffer_.size()) >= chunk_;
}

Result<void> TokenizeStage::finish(engine::Emitter<TokenChunk>&) {
  const std::vector<model::TokenId> ids = tokenizer_.finish();
  buffer_.insert(buffer_.end(), ids.begin(), ids.end());
  ended_ = true;
  if (tokenizer_.replaced_bytes() > 0) {
    spdlog::warn("document has {} bytes of invalid UTF-8; they were replaced by U+FFFD", tokenizer_.replaced_bytes());
  }
  return {};
}

}  // namespace ilre::stages
