// qa_real: factual questions about long real documents that nobody here wrote — software manuals installed
// from Debian packages at evaluation time (configs/qa-real/*.yaml name the package, the file and, per
// question, the answer and the evidence sentence as it stands in the text).
//
// Per context (a document alone, or every document inside real filler text up to a target length) ONE
// streaming prefill to l_R; then per question and budget every method recalls tokens, evidence recall is
// the share of the evidence sentence's tokens recalled, and the full model answers from the compressed
// prompt. Two references bound what recall can give: the passage alone (the model given only the text
// around the evidence) and the full context where it fits the trained window. Questions marked heldout are
// never used to choose a setting and are reported apart.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/metrics.h"
#include "ilre/config.h"
#include "model/kernels/compute_pool.h"
#include "model/model.h"

namespace ilre::eval {

struct QaQuestion {
  std::string id;
  std::string question;
  std::string answer;
  std::vector<std::string> aliases;  // other spellings a correct reply may use
  std::string evidence;              // the sentence that states the answer, whitespace-collapsed
  bool heldout = false;
  std::pair<size_t, size_t> evidence_bytes;  // [start, end) in the document text
};

struct QaDocument {
  std::string name;
  std::string package;  // the Debian package the file comes from
  std::string path;
  std::string text;
  std::vector<QaQuestion> questions;
};

// Reads a question file and its document (.gz files are decompressed) and locates every evidence sentence:
// exactly one whitespace-collapsed occurrence each. Throws Exception naming the file, the question and
// the Debian package to install when the document is missing or is another version.
QaDocument load_qa_document(const std::string& question_file);

// The [start, end) bytes of `needle` in `text` when runs of whitespace count as one space in both; throws
// Exception(invalid_argument) unless it occurs exactly once.
std::pair<size_t, size_t> find_collapsed(const std::string& text, const std::string& needle);

struct QaRealSettings {
  std::vector<std::string> documents;   // question files
  std::vector<int64_t> lengths{0};      // 0: each document alone; N: all documents inside N tokens of filler
  std::vector<std::string> filler;      // files or directories of real text that pad the longer contexts
  std::vector<int64_t> budgets{1024, 2048, 4096, 8192, 24576};
  bool answer = true;                   // false: recall only (no final passes, no references)
  int64_t passage_chars = 1400;         // the passage-alone reference: this many bytes around the evidence
  std::vector<int32_t> probe_layers;    // recall of ilre at each of these layers too (one probe pass)
  // Groups of probe layers whose attention scores are added before pooling (issue 12's "several layers'
  // scores combined"); a probe row each, after the per-layer rows.
  std::vector<std::vector<int32_t>> probe_combine;
  std::string split = "all";            // all | tune | heldout: which questions run

  void validate() const;
  nlohmann::json to_json() const;
};

struct QaMethodOutcome {
  std::string method;
  int64_t budget = 0;       // as asked; 0: the whole context (full)
  int64_t recalled = 0;     // tokens recalled: the budget clamped so recall + query + answer fit the context
  bool skipped = false;     // full: the context exceeds the final pass's context (decode.dca / decode.context)
  double cover = 0.0;       // share of the evidence tokens recalled
  bool answered = false;    // a final pass ran
  std::string answer;
  bool correct = false;
  int64_t prompt_tokens = 0;
  double select_ms = 0.0;
  double answer_ms = 0.0;
  bool dca = false;         // the final pass ran with dual chunk attention
  std::vector<TokenRange> spans;  // recalled ranges overlapping the evidence +- 256 tokens (for reading)
};

struct QaQuestionOutcome {
  std::string id;
  std::string document;
  bool heldout = false;
  std::string question;
  std::string answer;
  TokenRange evidence;      // token range inside the context
  std::vector<QaMethodOutcome> methods;
  std::vector<std::vector<double>> probe_cover;  // [probe layer][budget]
};

struct QaContextOutcome {
  std::string name;         // "perlfunc" or "all@1048576"
  int64_t n_tokens = 0;
  double prefill_ms = 0.0;
  double probe_ms = 0.0;
  std::vector<QaQuestionOutcome> questions;
};

struct QaPassageOutcome {  // the passage-alone reference, once per question
  std::string id;
  std::string answer;
  bool correct = false;
  int64_t prompt_tokens = 0;
};

struct QaRun {
  std::string model;
  int32_t layer = -1;
  std::string config_yaml;
  QaRealSettings settings;
  std::vector<std::string> methods;
  std::vector<QaContextOutcome> contexts;
  std::vector<QaPassageOutcome> passages;
  double seconds = 0.0;
};

using QaProgressFn = std::function<void(const std::string& line)>;

QaRun run_qa_real(const model::Model& model, model::ComputePool& pool, const Config& cfg, int32_t layer,
                  const QaRealSettings& settings, const std::vector<std::string>& methods, int32_t max_answer_tokens,
                  bool stop_at_newline, const QaProgressFn& progress = {});

// Did a reply give the answer (or an alias)? Its words, case-insensitive, in order and adjacent.
bool qa_correct(const std::string& reply, const QaQuestion& q);

nlohmann::json to_json(const QaRun& r);
// Tables: per context length, method and budget the evidence recall, the share of questions whose evidence
// was recalled whole (>= 0.9) and the accuracy, tune and heldout apart, beside the references.
std::string qa_markdown(const QaRun& r);

}  // namespace ilre::eval
