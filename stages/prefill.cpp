#include "stages/prefill.h"

#include <algorithm>

#include "ilre/error.h"

namespace ilre::stages {
namespace {

StreamingPrefill make_prefill(const model::Model& model, model::ComputePool& pool, PrefillSettings settings,
                              const std::vector<uint8_t>& state) {
  if (state.empty()) return StreamingPrefill(model, pool, settings);
  return StreamingPrefill(model, pool, settings, state);
}

}  // namespace

PrefillStage::PrefillStage(const model::Model& model, model::ComputePool& pool, PrefillSettings settings,
                           int64_t state_every, std::vector<uint8_t> state)
    : prefill_(make_prefill(model, pool, settings, state)), state_every_(state_every) {}

PrefillStage::PrefillStage(const model::Model& model, model::ComputePool& pool, PrefillSettings settings,
                           int64_t state_every, ShardRange shard)
    : prefill_(model, pool, settings), state_every_(state_every), shard_(shard) {
  const int64_t chunk = prefill_.settings().chunk;
  if (shard.begin < 0 || shard.end <= shard.begin || shard.begin % chunk != 0) {
    throw Exception(errc::invalid_argument, "shard [" + std::to_string(shard.begin) + ", " + std::to_string(shard.end) +
                                                ") is empty or does not start on a chunk boundary");
  }
  sink_end_ = (prefill_.settings().sink + chunk - 1) / chunk * chunk;
  warm_begin_ = std::max(sink_end_, shard.begin - prefill_.receptive_field());
}

bool PrefillStage::shard_keeps(const TokenChunk& in) {
  const int64_t at = in.first_pos;
  if (at >= shard_->end) return false;
  if (at >= sink_end_ && at < warm_begin_) return false;  // forgotten again by the time the shard starts
  if (prefill_.next_position() < at) prefill_.jump_to(at);
  if (at >= shard_->begin) return true;
  prefill_.advance(in.tokens);
  return false;
}

Result<void> PrefillStage::start(engine::StageContext& ctx) {
  ctx_ = &ctx;
  return {};
}

Result<void> PrefillStage::process(TokenChunk&& in, engine::Emitter<KeyBlock>& out) {
  if (shard_ && !in.tail && !shard_keeps(in)) return {};
  if (in.first_pos != prefill_.next_position()) {
    return make_error(errc::internal, "prefill expected position " + std::to_string(prefill_.next_position()) +
                                          ", got a chunk at " + std::to_string(in.first_pos));
  }
  if (in.tail) {
    // The tokenizer's last message: nothing to run, the tail is stored with the final state.
    tail_ = std::move(in.tail);
    return {};
  }
  KeyBlock block;
  block.seq = in.seq;
  block.first_pos = in.first_pos;
  prefill_.run(in.tokens, block.keys);
  const int64_t end = prefill_.next_position();
  // A segment boundary was crossed: the store will persist this state with the segment that ends here.
  // It has no tail: a stream interrupted mid-append continues from there with a new tokenizer.
  if (state_every_ > 0 && end / state_every_ != in.first_pos / state_every_) {
    block.final_state = pack_document_state({prefill_.save_state(), std::nullopt});
  }
  block.tokens = std::move(in.tokens);
  if (ctx_) {
    ctx_->add_items_in(block.tokens.size());
    ctx_->add_items_out(block.tokens.size());
  }
  out.emit(std::move(block));
  return {};
}

Result<void> PrefillStage::finish(engine::Emitter<KeyBlock>& out) {
  KeyBlock last;
  last.first_pos = prefill_.next_position();
  last.seq = -1;
  last.final_state = pack_document_state({prefill_.save_state(), std::move(tail_)});
  out.emit(std::move(last));
  return {};
}

}  // namespace ilre::stages
