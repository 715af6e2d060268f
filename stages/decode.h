// decode — the compressed prompt through the full model from scratch, then sampling; streams the answer
// one token per step. The prompt is prefilled one batch per step so a cancel is honoured within a batch.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string_view>

#include "engine/stage.h"
#include "model/sampler.h"
#include "model/session.h"
#include "stages/messages.h"

namespace ilre::stages {

struct DecodeTotals {
  int64_t prompt_tokens = 0;
  int64_t generated = 0;
  double prefill_seconds = 0;
  double generate_seconds = 0;
  bool stopped_at_eog = false;
};

class DecodeStage {
 public:
  using In = Prompt;
  using Out = AnswerPiece;
  static constexpr std::string_view kName = "decode";

  DecodeStage(const model::Model& model, model::ComputePool& pool, model::Numerics numerics, int64_t batch,
              int32_t max_tokens, model::SamplerParams sampler, bool stop_at_newline = false);
  Result<void> start(engine::StageContext& ctx);
  Result<void> process(Prompt&& in, engine::Emitter<AnswerPiece>& out);
  Result<bool> produce(engine::Emitter<AnswerPiece>& out);
  const DecodeTotals& totals() const { return totals_; }

 private:
  const model::Model& model_;
  model::Session session_;
  model::Sampler sampler_;
  int64_t batch_;
  // With stop_at_newline: truncates text at a line break that follows answer text; true = stop there.
  bool cut_at_line_end(std::string& text);
  int32_t max_tokens_;
  bool stop_at_newline_;
  bool answer_has_text_ = false;
  std::optional<Prompt> prompt_;
  size_t prefilled_ = 0;
  std::vector<float> logits_;
  DecodeTotals totals_;
  bool done_ = false;
  engine::StageContext* ctx_ = nullptr;
};

}  // namespace ilre::stages
