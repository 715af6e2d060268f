// The one place where the user's configuration becomes retrieval settings, so the engine, calibration and
// evaluation score and select tokens identically.
#pragma once

#include <string>
#include <vector>

#include "ilre/config.h"
#include "model/hparams.h"
#include "retrieval/pooling.h"
#include "retrieval/scoring.h"

namespace ilre::retrieval {

inline Aggregation aggregation_of(const std::string& name) {
  return name == "max" ? Aggregation::max : Aggregation::sum;
}

inline ScoreConfig score_config(const Config& cfg, const model::HParams& hp) {
  return ScoreConfig{.softmax = cfg.scoring.softmax,
                     .over_heads = aggregation_of(cfg.scoring.over_heads),
                     .over_queries = aggregation_of(cfg.scoring.over_queries),
                     .kq_scale = hp.kq_scale};
}

// keep_first_default applies when recall.keep_first is -1 (= the prefill sink the store was made with).
inline SelectionConfig selection_config(const Config& cfg, int64_t budget, int64_t keep_first_default) {
  SelectionConfig sel;
  sel.kernels.clear();
  for (size_t i = 0; i < cfg.pooling.kernels.size(); ++i) {
    sel.kernels.push_back({cfg.pooling.kernels[i], cfg.pooling.shares[i]});
  }
  sel.mode = cfg.pooling.mode == "expand_center" ? SelectionMode::expand_center : SelectionMode::pooled_topk;
  sel.budget = budget;
  sel.keep_first = cfg.recall.keep_first >= 0 ? cfg.recall.keep_first : keep_first_default;
  sel.keep_last = cfg.recall.keep_last;
  return sel;
}

}  // namespace ilre::retrieval
