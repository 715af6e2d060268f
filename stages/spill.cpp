#include "stages/spill.h"

namespace ilre::stages {

SpillStage::SpillStage(storage::StoreWriter& writer, int64_t max_buffer_tokens)
    : writer_(writer), max_buffer_tokens_(max_buffer_tokens) {}

Result<void> SpillStage::start(engine::StageContext& ctx) {
  ctx_ = &ctx;
  return {};
}

Result<void> SpillStage::flush() {
  if (tokens_.empty()) return {};
  auto stats = writer_.append(keys_, tokens_, first_pos_);
  if (!stats) return tl::unexpected(stats.error());
  totals_.tokens += static_cast<int64_t>(tokens_.size());
  totals_.segments += 1;
  totals_.raw_key_bytes += stats->segment.raw_key_bytes;
  totals_.stored_key_bytes += stats->segment.stored_key_bytes;
  totals_.stored_bytes += stats->segment.stored_bytes;
  totals_.encode_seconds += stats->encode_seconds;
  totals_.write_seconds += stats->write_seconds;
  totals_.nonfinite_keys += stats->n_nonfinite;
  if (ctx_) ctx_->add_items_out(tokens_.size());
  keys_.clear();
  tokens_.clear();
  first_pos_ = -1;
  return {};
}

Result<void> SpillStage::process(KeyBlock&& in) {
  if (!in.tokens.empty()) {
    if (first_pos_ < 0) first_pos_ = in.first_pos;
    keys_.insert(keys_.end(), in.keys.begin(), in.keys.end());
    tokens_.insert(tokens_.end(), in.tokens.begin(), in.tokens.end());
    if (ctx_) ctx_->add_items_in(in.tokens.size());
  }
  if (in.final_state || static_cast<int64_t>(tokens_.size()) >= max_buffer_tokens_) {
    if (auto r = flush(); !r) return r;
  }
  if (in.final_state) {
    if (auto r = writer_.write_state(*in.final_state); !r) return r;
    if (in.seq < 0) saw_end_ = true;  // the prefill's end-of-document marker
  }
  return {};
}

Result<void> SpillStage::finish() { return flush(); }

}  // namespace ilre::stages
