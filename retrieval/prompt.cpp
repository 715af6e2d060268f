#include "retrieval/prompt.h"

#include <algorithm>
#include <limits>

#include "ilre/error.h"
#include "model/tokenizer/chat_template.h"

namespace ilre::retrieval {
namespace {

// Splits the rendered turn at the document's place; a control character no template or question holds.
constexpr std::string_view kDocumentMark = "\x1e";

std::string with_question(const Config& cfg, const std::string& question) {
  std::string text = cfg.query.template_text;
  const auto at = text.find("{question}");
  if (at != std::string::npos) text.replace(at, 10, question);
  return text;
}

// Length of the common prefix of two token lists.
size_t common_prefix(const std::vector<model::TokenId>& a, const std::vector<model::TokenId>& b) {
  size_t n = 0;
  while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
  return n;
}

// The tokens of `whole` (the tokens of text) that hold text[cb, ce): where the tokens of text[0, cb) and of
// text[0, ce) stop agreeing with it. A token that straddles a boundary counts with the question.
void locate_question(const model::Vocab& vocab, const std::string& text, size_t cb, size_t ce, bool parse_special,
                     QueryPrompt& q) {
  const model::TokenizeOptions o{.add_special = false, .parse_special = parse_special};
  q.question_begin = common_prefix(vocab.tokenize(text.substr(0, cb), o), q.query);
  q.question_end = std::max(q.question_begin, common_prefix(vocab.tokenize(text.substr(0, ce), o), q.query));
  if (q.question_end == q.question_begin) q.question_end = q.query.size();  // not told apart: everything
}

}  // namespace

std::pair<int64_t, int64_t> scoring_rows(const Config& cfg, const QueryPrompt& q) {
  if (cfg.scoring.query == "question" && q.question_end > q.question_begin) {
    return {static_cast<int64_t>(q.question_begin), static_cast<int64_t>(q.question_end)};
  }
  return {0, static_cast<int64_t>(q.query.size())};
}

QueryPrompt query_prompt(const Config& cfg, const model::Model& model, const std::string& question) {
  const model::Vocab& vocab = model.vocab();
  const std::string text = with_question(cfg, question);
  QueryPrompt q;
  q.span_order = cfg.query.span_order == "relevance" ? SpanOrder::relevance : SpanOrder::document;
  if (!cfg.query.span_separator.empty()) q.separator = vocab.tokenize(cfg.query.span_separator, {.add_special = false});
  if (!cfg.query.chat) {
    q.query = vocab.tokenize(text, {.add_special = false});
    const size_t at = cfg.query.template_text.find("{question}");  // the text before it is the template's own
    locate_question(vocab, text, at, at + question.size(), false, q);
    return q;
  }
  const model::ChatTemplate tmpl = model::chat_template_for(model.file(), model.hparams());
  const std::string turn = tmpl.apply({{"user", std::string(kDocumentMark) + text}});
  const auto mark = turn.find(kDocumentMark);
  if (mark == std::string::npos || turn.find(kDocumentMark, mark + 1) != std::string::npos) {
    throw Exception(errc::invalid_argument, "query.template and the question must not contain the control character U+001E");
  }
  // parse_special: the template's markers are special tokens, as llama-server tokenizes a rendered chat prompt.
  q.lead = vocab.tokenize(turn.substr(0, mark), {.add_special = false, .parse_special = true});
  const std::string after = turn.substr(mark + kDocumentMark.size());
  q.query = vocab.tokenize(after, {.add_special = false, .parse_special = true});
  const size_t in_turn = after.find(question);
  if (!question.empty() && in_turn != std::string::npos) {
    locate_question(vocab, after, in_turn, in_turn + question.size(), true, q);
  } else {
    q.question_end = q.query.size();
  }
  return q;
}

namespace {

// Maximal runs of consecutive document positions, as [begin, end) indices into the recalled tokens from
// `first` on.
std::vector<std::pair<size_t, size_t>> runs_of(const std::vector<int64_t>& at, size_t first) {
  std::vector<std::pair<size_t, size_t>> runs;
  for (size_t i = first; i < at.size(); ++i) {
    if (!runs.empty() && at[i] == at[i - 1] + 1) {
      runs.back().second = i + 1;
    } else {
      runs.emplace_back(i, i + 1);
    }
  }
  return runs;
}

// Ascending by each run's best relevance (stable: ties keep document order), so the best run ends the
// document part; a run that starts the document (the attention sink) stays first.
void order_by_relevance(std::vector<std::pair<size_t, size_t>>& runs, const std::vector<int64_t>& at,
                        std::span<const float> relevance, int64_t document_start) {
  const auto best = [&](const std::pair<size_t, size_t>& r) {
    float m = -std::numeric_limits<float>::infinity();
    for (size_t i = r.first; i < r.second; ++i) m = std::max(m, relevance[i]);
    return m;
  };
  const auto from = runs.begin() + (!runs.empty() && at[runs.front().first] == document_start ? 1 : 0);
  std::vector<std::pair<float, std::pair<size_t, size_t>>> keyed;
  for (auto it = from; it != runs.end(); ++it) keyed.emplace_back(best(*it), *it);
  std::stable_sort(keyed.begin(), keyed.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (size_t k = 0; k < keyed.size(); ++k) *(from + static_cast<std::ptrdiff_t>(k)) = keyed[k].second;
}

}  // namespace

CompressedPrompt compressed_prompt(const std::vector<model::TokenId>& recalled, const std::vector<int64_t>& at,
                                   int64_t n_context, const QueryPrompt& q, bool original_positions,
                                   model::TokenId bos, int64_t max_tokens, std::span<const float> relevance) {
  if (!relevance.empty() && relevance.size() != recalled.size()) {
    throw Exception(errc::internal, "compressed prompt: one relevance per recalled token is needed");
  }
  // The lead follows the document's BOS (position 0) so the prompt still starts as the model expects.
  const size_t lead_at = !recalled.empty() && !at.empty() && at.front() == 0 && bos >= 0 && recalled.front() == bos ? 1 : 0;
  const auto n_lead = static_cast<int64_t>(q.lead.size());
  std::vector<std::pair<size_t, size_t>> runs = runs_of(at, lead_at);
  // Original positions keep the document's order: a reordered prompt would run positions backwards.
  if (q.span_order == SpanOrder::relevance && !relevance.empty() && !original_positions) {
    order_by_relevance(runs, at, relevance, static_cast<int64_t>(lead_at));
  }
  int64_t gaps = 0;  // boundaries between runs that are not adjacent in the document
  for (size_t r = 1; r < runs.size(); ++r) gaps += at[runs[r].first] != at[runs[r - 1].second - 1] + 1 ? 1 : 0;
  if (!runs.empty() && lead_at == 1 && at[runs.front().first] != 1) ++gaps;  // the BOS, then a later run
  const auto base = static_cast<int64_t>(recalled.size() + q.lead.size() + q.query.size());
  const auto n_sep = static_cast<int64_t>(q.separator.size());
  const bool separate = n_sep > 0 && (max_tokens < 0 || base + gaps * n_sep <= max_tokens);

  CompressedPrompt p;
  p.tokens.reserve(static_cast<size_t>(base + (separate ? gaps * n_sep : 0)));
  p.positions.reserve(p.tokens.capacity());
  auto put = [&](model::TokenId t, int64_t original) {
    p.tokens.push_back(t);
    p.positions.push_back(static_cast<int32_t>(original_positions ? original : static_cast<int64_t>(p.positions.size())));
  };
  for (size_t i = 0; i < lead_at; ++i) put(recalled[i], at[i]);
  for (int64_t i = 0; i < n_lead; ++i) put(q.lead[static_cast<size_t>(i)], static_cast<int64_t>(lead_at) + i);
  int64_t last = lead_at > 0 ? at[0] : -1;  // document position of the last token put
  for (const auto& [begin, end] : runs) {
    if (separate && last >= 0 && at[begin] != last + 1) {
      for (int64_t k = 0; k < n_sep; ++k) put(q.separator[static_cast<size_t>(k)], last + n_lead + 1 + k);
    }
    for (size_t i = begin; i < end; ++i) put(recalled[i], at[i] + n_lead);
    last = at[end - 1];
  }
  for (size_t i = 0; i < q.query.size(); ++i) put(q.query[i], n_context + n_lead + static_cast<int64_t>(i));
  return p;
}

}  // namespace ilre::retrieval
