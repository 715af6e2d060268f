// The final prompt around the recalled tokens, built one way for `ilre ask`, the evaluation and
// calibration: the query (question + answer prefix, ILRe's scoring query) ends it, and with query.chat a
// lead (the chat template's opening, "<start_of_turn>user\n") goes right after the document's BOS, so the
// recalled document and the question form one user turn and the model's reply starts after the query.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ilre/config.h"
#include "model/model.h"

namespace ilre::retrieval {

// query.span_order: the recalled spans in document order, or by relevance (the best last).
enum class SpanOrder { document, relevance };

struct QueryPrompt {
  std::vector<model::TokenId> lead;   // after the document's BOS; empty without query.chat
  std::vector<model::TokenId> query;  // the scoring query; ends the prompt
  std::vector<model::TokenId> separator;  // query.span_separator: between non-adjacent recalled spans
  SpanOrder span_order = SpanOrder::document;
  // query[question_begin, question_end): the question's own tokens inside the template.
  size_t question_begin = 0;
  size_t question_end = 0;
};

// The query rows that score under scoring.query: [0, query.size()) for all, the question's for question
// (all of them when the question's tokens could not be told apart).
std::pair<int64_t, int64_t> scoring_rows(const Config& cfg, const QueryPrompt& q);

// The question inside query.template ({question} replaced), wrapped in the model's chat template when
// query.chat (the GGUF's template, else the architecture's; throws Exception(unsupported) for a template
// ilre does not recognise). No BOS: the document has it.
QueryPrompt query_prompt(const Config& cfg, const model::Model& model, const std::string& question);

struct CompressedPrompt {
  std::vector<model::TokenId> tokens;
  std::vector<int32_t> positions;  // one per token
};

// recalled: document tokens at the sorted document positions `at` (of a document of n_context tokens).
// Contiguous positions count 0.. over the whole prompt; original positions keep each document token's
// position (shifted by the lead after the BOS; a separator takes the positions after the span it follows)
// and put the query after the whole document. Separators are left out when with them the prompt would
// exceed max_tokens (< 0: no limit). relevance (one per recalled token: the score that selected it) orders
// the spans when q.span_order says so and positions are contiguous; without it the order is the document's.
CompressedPrompt compressed_prompt(const std::vector<model::TokenId>& recalled, const std::vector<int64_t>& at,
                                   int64_t n_context, const QueryPrompt& q, bool original_positions,
                                   model::TokenId bos, int64_t max_tokens = -1, std::span<const float> relevance = {});

}  // namespace ilre::retrieval
