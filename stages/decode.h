// decode — the compressed prompt through the full model from scratch, then sampling; streams the answer
// one token per step. The prompt is prefilled one batch per step so a cancel is honoured within a batch.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "engine/stage.h"
#include "ilre/config.h"
#include "model/dca.h"
#include "model/sampler.h"
#include "model/session.h"
#include "stages/messages.h"

namespace ilre::stages {

// decode.dca / decode.dca_context / decode.context (names checked by Config::validate()).
model::LongContext long_context_of(const DecodeConfig& d);

struct DecodeTotals {
  int64_t prompt_tokens = 0;
  bool dca = false;  // the final pass ran with dual chunk attention
  int64_t generated = 0;
  double prefill_seconds = 0;
  double generate_seconds = 0;
  bool stopped_at_eog = false;
  bool stopped_at_newline = false;
};

// Ends an answer at its first line break after some text, piece by piece as tokens arrive (a piece may
// hold the break anywhere, or only leading blank lines).
class FirstLineCut {
 public:
  // Truncates `piece` before a line break that follows answer text; true = the answer ends here.
  bool cut(std::string& piece);

 private:
  bool seen_text_ = false;
};

class DecodeStage {
 public:
  using In = Prompt;
  using Out = AnswerPiece;
  static constexpr std::string_view kName = "decode";

  DecodeStage(const model::Model& model, model::ComputePool& pool, model::Numerics numerics, model::KvType kv_type,
              int64_t batch, int32_t max_tokens, model::SamplerParams sampler, bool stop_at_newline = false,
              model::LongContext long_context = {});
  Result<void> start(engine::StageContext& ctx);
  Result<void> process(Prompt&& in, engine::Emitter<AnswerPiece>& out);
  Result<bool> produce(engine::Emitter<AnswerPiece>& out);
  const DecodeTotals& totals() const { return totals_; }

 private:
  const model::Model& model_;
  model::Session session_;
  model::Sampler sampler_;
  int64_t batch_;
  int32_t max_tokens_;
  bool stop_at_newline_;
  model::LongContext long_context_;
  FirstLineCut line_cut_;
  std::optional<Prompt> prompt_;
  size_t prefilled_ = 0;
  std::vector<float> logits_;
  DecodeTotals totals_;
  bool done_ = false;
  engine::StageContext* ctx_ = nullptr;
};

}  // namespace ilre::stages
