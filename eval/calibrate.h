// Offline choice of the retrieval layer l_R (ILRe §1.1): for every layer, needles (pass keys of several
// widths and key-value sentences) are planted in haystacks of several lengths, scored at that layer with
// the configured ILRe scorer, recalled under a fixed budget, and the needle-token recall is measured. The
// smallest layer with the best mean recall wins. Real-text evidence recall from a qa_real layer probe can
// be folded in (EvidenceRecall): synthetic needles rank layers alike that real manuals tell apart.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/layer_probe.h"
#include "ilre/config.h"
#include "model/model.h"

namespace ilre::eval {

// Real-text evidence recall per layer, from a qa_real run with a layer probe (`ilre eval -c
// configs/eval-real-probe.yaml`): the mean evidence cover of its tune questions (heldout ones never choose a
// setting) at one budget.
struct EvidenceRecall {
  std::string source;            // the file it was read from, kept in the calibration record
  std::string model;             // the model file the probe ran (file name)
  int64_t budget = 0;
  int64_t n_questions = 0;
  std::vector<double> by_layer;  // [layer]; NaN where the probe did not look

  bool probed(size_t layer) const;
  nlohmann::json to_json() const;  // unprobed layers as null
};

// From a parsed qa_real.json; throws Exception(invalid_argument) naming what is missing: not a qa_real run,
// no probe, the budget not among the probed ones, a probed layer past n_layers, no tune question.
EvidenceRecall evidence_from_qa_real(const nlohmann::json& run, int64_t budget, int64_t n_layers,
                                     const std::string& source);

// Parses qa_real.json or qa_real.json.zst, or the first of them found under a folder (an `ilre eval -o`
// directory); throws Exception(io_failed | invalid_argument).
nlohmann::json read_qa_real_json(const std::string& path);

// What the rule ranks when evidence is given: the mean of needle and evidence recall on the probed layers,
// NaN elsewhere (those layers do not compete).
std::vector<double> combined_recall(const std::vector<double>& needle, const EvidenceRecall& evidence);

struct CalibrationSettings {
  std::vector<int64_t> lengths{4096, 16384, 32768};  // haystack tokens
  std::vector<int> passkey_digits{1, 8, 32, 64};
  int kv_needles = 2;
  // Pass keys and key-value strings share a rare literal with their question; plain facts are found by
  // meaning, which early layers cannot do yet (Gemma 3 270M: layer 2 finds every pass key and misses most
  // facts; layer 5 finds both).
  int fact_needles = 4;
  int64_t budget = 1024;  // tokens recalled per question (always-kept sink included)
  uint64_t seed = 7;
  // Mean-recall deficit (absolute) still counted as a tie with the best layer; see choose_layer.
  double tolerance = 0.02;
  // With evidence, the layer is chosen on combined_recall among the probed candidate layers.
  std::optional<EvidenceRecall> evidence;
};

struct CalibrationResult {
  int32_t layer = -1;
  std::vector<int64_t> lengths;                // actual haystack lengths
  std::vector<std::vector<double>> recall;     // [length][layer]: mean needle-token recall
  std::vector<double> mean_recall;             // [layer] over lengths
  std::vector<std::vector<double>> samples;    // [haystack x needle][layer]: recall of one needle
  std::vector<std::string> needle_kinds;       // e.g. "passkey-8" (width in digits), "kv"
  std::vector<std::vector<double>> per_needle; // [needle][layer] recall over lengths
  std::optional<EvidenceRecall> evidence;      // real-text evidence, when given
  std::vector<double> combined;                // [layer] what the rule ranked when evidence was given
  nlohmann::json settings;

  nlohmann::json to_json() const;
  std::string table() const;  // human-readable per-layer table
};

// The paper's rule, "best recall, ties -> the smaller layer", where a tie is a mean recall at most
// `tolerance` below the best: a deeper layer costs proportionally more ingest time, and on Gemma 3 270M
// the good layers differ by 1-2 points only on 32- and 64-digit pass keys, whose recall the pooling
// kernels (not the layer) limit.
// Only layers with eligible[l] compete (empty: all).
int32_t choose_layer(const std::vector<double>& mean_recall, double tolerance, const std::vector<bool>& eligible = {});

// The layers l_R may be: on models that mix sliding-window and global layers (Gemma 3: every sixth layer is
// global), the global ones only. A sliding-window layer was trained to attend 512 tokens back, so its
// query·key over a whole document is out of its training: on real manuals (qa_real's layer probe,
// bench/README.md) layers 1-4, 7 and 9 recall 0.02-0.65 of the evidence at 2K tokens where global layer 5
// recalls 0.90, while synthetic needles (a distinct sentence in repetition) rank them alike. Empty: every
// layer (no sliding-window layers).
std::vector<bool> retrieval_candidates(const model::HParams& hp);

// Progress callback: (what, done, total).
using CalibrationProgress = std::function<void(const std::string&, int64_t, int64_t)>;

CalibrationResult calibrate(const model::Model& model, model::ComputePool& pool, const Config& cfg,
                            const CalibrationSettings& settings, const CalibrationProgress& progress = {});

// Writes configs/models/<stem>.yaml: layer, the table and the settings, atomically.
void write_model_config(const std::string& path, const CalibrationResult& r, const std::string& model_name);

}  // namespace ilre::eval
