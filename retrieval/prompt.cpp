#include "retrieval/prompt.h"


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

}  // namespace

QueryPrompt query_prompt(const Config& cfg, const model::Model& model, const std::string& question) {
  const model::Vocab& vocab = model.vocab();
  const std::string text = with_question(cfg, question);
  QueryPrompt q;
  if (!cfg.query.span_separator.empty()) q.separator = vocab.tokenize(cfg.query.span_separator, {.add_special = false});
  if (!cfg.query.chat) {
    q.query = vocab.tokenize(text, {.add_special = false});
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
  q.query = vocab.tokenize(turn.substr(mark + kDocumentMark.size()), {.add_special = false, .parse_special = true});
  return q;
}

CompressedPrompt compressed_prompt(const std::vector<model::TokenId>& recalled, const std::vector<int64_t>& at,
                                   int64_t n_context, const QueryPrompt& q, bool original_positions,
                                   model::TokenId bos, int64_t max_tokens) {
  // The lead follows the document's BOS (position 0) so the prompt still starts as the model expects.
  const size_t lead_at = !recalled.empty() && !at.empty() && at.front() == 0 && bos >= 0 && recalled.front() == bos ? 1 : 0;
  const auto n_lead = static_cast<int64_t>(q.lead.size());
  int64_t gaps = 0;
  for (size_t i = 1; i < at.size(); ++i) gaps += at[i] != at[i - 1] + 1 ? 1 : 0;
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
  for (size_t i = lead_at; i < recalled.size(); ++i) {
    if (separate && i > 0 && at[i] != at[i - 1] + 1) {
      for (int64_t k = 0; k < n_sep; ++k) put(q.separator[static_cast<size_t>(k)], at[i - 1] + n_lead + 1 + k);
    }
    put(recalled[i], at[i] + n_lead);
  }
  for (size_t i = 0; i < q.query.size(); ++i) put(q.query[i], n_context + n_lead + static_cast<int64_t>(i));
  return p;
}

}  // namespace ilre::retrieval
