// The RULER-style synthetic suite (Hsieh et al., 2024, "RULER: What's the Real Context Size of Your
// Long-Context Language Models?"): needle-in-a-haystack variants and variable tracking, generated from a
// seed so every run, method and machine sees the same documents.
//
// A case is one document with its planted needles, one question and the answers a correct reply contains.
// It knows the exact token ranges of the needles a method must recall to answer, so recall is measured on
// token indices, never guessed from the answer text.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "eval/haystack.h"
#include "model/tokenizer/vocab.h"

namespace ilre::eval {

enum class Task {
  niah_single,      // one pass key in the haystack
  niah_multikey,    // the asked pass key among distractor pass keys of other labels
  niah_multivalue,  // one label with several pass keys; the answer must list all of them
  niah_multiquery,  // several labels asked at once; the answer must list every pass key
  vt,               // variable tracking: VAR A = 12345. VAR B = VAR A. ... which variables equal 12345?
};

const std::vector<Task>& all_tasks();
std::string_view task_name(Task t);
std::optional<Task> task_from_name(std::string_view name);

std::string_view filler_name(Filler f);
std::optional<Filler> filler_from_name(std::string_view name);

// Sizes of the tasks (RULER's defaults where RULER has one).
struct TaskSettings {
  int passkey_digits = 7;  // RULER: 7-digit numbers
  int distractors = 3;     // niah_multikey: other labels' pass keys
  int values = 4;          // niah_multivalue: pass keys of the one label (RULER: 4)
  int queries = 4;         // niah_multiquery: labels asked at once (RULER: 4)
  int vt_hops = 4;         // vt: assignments after the first (RULER: 4 hops)
  int vt_chains = 1;       // vt: chains; the ones not asked about are distractors (RULER: 1)
};

// Checks the ranges (labels are limited, chains need hops); throws Exception(invalid_argument).
void validate(const TaskSettings& s);

// One cell of the evaluation grid.
struct CaseSpec {
  Task task = Task::niah_single;
  Filler haystack = Filler::noise;
  int64_t length = 4096;  // target document tokens (the document is at least this long)
  double depth = 0.5;     // 0..1: where the first asked needle sits
  int sample = 0;         // repetition index within the cell
};

struct EvalCase {
  CaseSpec spec;
  std::string id;    // "niah_single/noise/4096/d50/s0"
  std::string text;  // the document
  int64_t n_tokens = 0;  // document tokens, BOS included
  // [start, end) token ranges of every needle the question needs, in text order.
  std::vector<std::pair<int64_t, int64_t>> required;
  // Planted needles the question does not need (multikey distractors, other vt chains).
  std::vector<std::pair<int64_t, int64_t>> distractors;
  std::string question;
  std::vector<std::string> answers;  // a correct reply contains every one
};

// Deterministic in (seed, spec): the same inputs give the same text, ranges, question and answers.
EvalCase make_case(const model::Vocab& vocab, const CaseSpec& spec, const TaskSettings& settings, uint64_t seed);

}  // namespace ilre::eval
