#include "stages/decode.h"

namespace ilre::stages {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

model::LongContext long_context_of(const DecodeConfig& d) {
  return {.dca = model::dca_mode_from_name(d.dca).value_or(model::DcaMode::automatic),
          .dca_context = d.dca_context,
          .context = d.context};
}

DecodeStage::DecodeStage(const model::Model& model, model::ComputePool& pool, model::Numerics numerics,
                         model::KvType kv_type, int64_t batch, int32_t max_tokens, model::SamplerParams sampler,
                         bool stop_at_newline, model::LongContext long_context)
    : model_(model),
      session_(model, pool, batch, numerics, kv_type),
      sampler_(sampler),
      batch_(batch),
      max_tokens_(max_tokens),
      stop_at_newline_(stop_at_newline),
      long_context_(long_context) {}

Result<void> DecodeStage::start(engine::StageContext& ctx) {
  ctx_ = &ctx;
  return {};
}

Result<void> DecodeStage::process(Prompt&& in, engine::Emitter<AnswerPiece>&) {
  if (prompt_) return make_error(errc::internal, "decode received a second prompt");
  if (in.tokens.empty()) return make_error(errc::invalid_argument, "the compressed prompt is empty");
  if (in.positions.size() != in.tokens.size()) return make_error(errc::internal, "the compressed prompt lacks positions");
  const int64_t n = static_cast<int64_t>(in.tokens.size());
  const int64_t last_pos = std::max<int64_t>(in.positions.back(), n - 1) + max_tokens_;
  try {
    session_.configure(long_context_, last_pos);
  } catch (const Exception& e) {
    return tl::unexpected(e.error());
  }
  if (n + max_tokens_ > session_.context()) {
    return make_error(errc::out_of_range,
                      "compressed prompt (" + std::to_string(n) + " tokens) plus " + std::to_string(max_tokens_) +
                          " answer tokens exceeds the final pass's context of " + std::to_string(session_.context()) +
                          "; lower recall.budget (or raise decode.context, with decode.dca)");
  }
  totals_.dca = session_.dca().has_value();
  totals_.prompt_tokens = static_cast<int64_t>(in.tokens.size());
  if (ctx_) ctx_->add_items_in(in.tokens.size());
  prompt_ = std::move(in);
  return {};
}

bool FirstLineCut::cut(std::string& piece) {
  for (size_t i = 0; i < piece.size(); ++i) {
    if (piece[i] == '\n' && seen_text_) {
      piece.resize(i);
      return true;
    }
    if (piece[i] != '\n' && piece[i] != ' ' && piece[i] != '\t' && piece[i] != '\r') seen_text_ = true;
  }
  return false;
}

Result<bool> DecodeStage::produce(engine::Emitter<AnswerPiece>& out) {
  // max_tokens == 0 asks for retrieval only: the compressed prompt is not even prefilled.
  if (!prompt_ || done_ || max_tokens_ == 0) return false;
  const size_t n = prompt_->tokens.size();
  if (prefilled_ < n) {
    const auto t0 = std::chrono::steady_clock::now();
    const size_t m = std::min(n - prefilled_, static_cast<size_t>(batch_));
    session_.eval_at(std::span<const model::TokenId>(prompt_->tokens).subspan(prefilled_, m),
                     std::span<const int32_t>(prompt_->positions).subspan(prefilled_, m), logits_);
    prefilled_ += m;
    totals_.prefill_seconds += seconds_since(t0);
    return true;
  }
  const auto t0 = std::chrono::steady_clock::now();
  if (totals_.generated >= max_tokens_) {
    done_ = true;
    return false;
  }
  const model::TokenId next = sampler_.sample(logits_);
  if (model_.vocab().is_eog(next)) {
    totals_.stopped_at_eog = true;
    done_ = true;
    return false;
  }
  AnswerPiece piece;
  piece.seq = totals_.generated++;
  piece.token = next;
  piece.text = model_.vocab().token_to_piece(next);
  const bool stop = stop_at_newline_ && line_cut_.cut(piece.text);
  if (ctx_) ctx_->add_items_out(1);
  if (!piece.text.empty()) out.emit(std::move(piece));
  if (stop) {
    totals_.stopped_at_newline = true;
    done_ = true;
  } else if (totals_.generated < max_tokens_ && session_.n_past() < session_.context()) {
    session_.eval(std::span<const model::TokenId>(&next, 1), logits_);
  } else {
    done_ = true;
  }
  totals_.generate_seconds += seconds_since(t0);
  return !done_;
}

}  // namespace ilre::stages
