#include "stages/tokenize.h"

#include <spdlog/spdlog.h>

namespace ilre::stages {

namespace {

model::StreamingTokenizer make_tokenizer(std::shared_ptr<const model::Vocab> vocab, bool add_bos,
                                         const std::optional<StreamTail>& resume) {
  // A resumed stream is the same document: BOS was decided when it started (the checkpoint knows), and
  // EOS, if the model adds one, comes when it is finished.
  if (resume) return model::StreamingTokenizer::resume(std::move(vocab), {.add_special = true, .parse_special = false},
                                                       resume->tokenizer);
  return model::StreamingTokenizer(std::move(vocab), {.add_special = add_bos, .parse_special = false});
}

}  // namespace

TokenizeStage::TokenizeStage(std::shared_ptr<const model::Vocab> vocab, int64_t chunk_tokens, int64_t first_pos,
                             bool add_bos, std::optional<StreamTail> resume, bool keep_open)
    : tokenizer_(make_tokenizer(std::move(vocab), add_bos, resume)),
      chunk_(chunk_tokens),
      first_pos_(first_pos),
      next_pos_(first_pos),
      keep_open_(keep_open) {
  if (resume) buffer_.assign(resume->tokens.begin(), resume->tokens.end());
}

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
  if (ended_ && keep_open_) {
    if (take_chunk(out, false)) return true;
    if (!tail_sent_) {
      TokenChunk last;
      last.seq = seq_++;
      last.first_pos = next_pos_;
      last.tail = StreamTail{tokenizer_.checkpoint(), std::vector<model::TokenId>(buffer_.begin(), buffer_.end())};
      buffer_.clear();
      tail_sent_ = true;
      out.emit(std::move(last));
    }
    return false;
  }
  take_chunk(out, ended_);
  return ended_ ? !buffer_.empty() : static_cast<int64_t>(buffer_.size()) >= chunk_;
}

Result<void> TokenizeStage::finish(engine::Emitter<TokenChunk>&) {
  ended_ = true;
  if (keep_open_) return {};  // produce() hands out the whole chunks, then the tail
  const std::vector<model::TokenId> ids = tokenizer_.finish();
  buffer_.insert(buffer_.end(), ids.begin(), ids.end());
  if (tokenizer_.replaced_bytes() > 0) {
    spdlog::warn("document has {} bytes of invalid UTF-8; they were replaced by U+FFFD", tokenizer_.replaced_bytes());
  }
  return {};
}

}  // namespace ilre::stages
