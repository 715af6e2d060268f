// The final prompt around the recalled tokens: the query ends it, query.chat's lead follows the BOS, and
// original positions stay the document's (shifted past the lead).
#include "retrieval/prompt.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "model/tokenizer/chat_template.h"
#include "support/paths.h"
#include "support/tiny_model.h"

namespace ilre::retrieval {
namespace {

constexpr model::TokenId kBos = 1;

TEST(CompressedPrompt, RecalledThenQueryWithContiguousPositions) {
  const QueryPrompt q{.lead = {}, .query = {90, 91}, .separator = {}};
  const CompressedPrompt p = compressed_prompt({kBos, 10, 11, 20}, {0, 1, 2, 7}, 50, q, false, kBos);
  EXPECT_EQ(p.tokens, (std::vector<model::TokenId>{kBos, 10, 11, 20, 90, 91}));
  EXPECT_EQ(p.positions, (std::vector<int32_t>{0, 1, 2, 3, 4, 5}));
}

TEST(CompressedPrompt, LeadFollowsTheBosAndShiftsOriginalPositions) {
  const QueryPrompt q{.lead = {80, 81}, .query = {90}, .separator = {}};
  const CompressedPrompt c = compressed_prompt({kBos, 10, 20}, {0, 1, 7}, 50, q, false, kBos);
  EXPECT_EQ(c.tokens, (std::vector<model::TokenId>{kBos, 80, 81, 10, 20, 90}));
  EXPECT_EQ(c.positions, (std::vector<int32_t>{0, 1, 2, 3, 4, 5}));
  const CompressedPrompt o = compressed_prompt({kBos, 10, 20}, {0, 1, 7}, 50, q, true, kBos);
  EXPECT_EQ(o.tokens, c.tokens);
  // BOS at 0, the lead at 1..2, document token p at p + 2, the query after the whole shifted document.
  EXPECT_EQ(o.positions, (std::vector<int32_t>{0, 1, 2, 3, 9, 52}));
}

TEST(CompressedPrompt, WithoutABosTheLeadOpensThePrompt) {
  const QueryPrompt q{.lead = {80}, .query = {90}, .separator = {}};
  // A model without BOS, and a selection whose first token is not the document's first.
  EXPECT_EQ(compressed_prompt({10, 20}, {0, 7}, 50, q, false, -1).tokens, (std::vector<model::TokenId>{80, 10, 20, 90}));
  EXPECT_EQ(compressed_prompt({10, 20}, {3, 7}, 50, q, true, kBos).positions, (std::vector<int32_t>{0, 4, 8, 51}));
}

TEST(CompressedPrompt, SeparatorGoesBetweenSpansThatAreNotAdjacent) {
  const QueryPrompt q{.lead = {}, .query = {90}, .separator = {70, 71}};
  // Spans [0,2) and [7,8) and [9,11): two gaps.
  const CompressedPrompt c = compressed_prompt({kBos, 10, 20, 30, 31}, {0, 1, 7, 9, 10}, 50, q, false, kBos);
  EXPECT_EQ(c.tokens, (std::vector<model::TokenId>{kBos, 10, 70, 71, 20, 70, 71, 30, 31, 90}));
  EXPECT_EQ(c.positions.back(), 9);
  // Original positions: a separator follows the span before it, the query follows the document.
  const CompressedPrompt o = compressed_prompt({kBos, 10, 20, 30, 31}, {0, 1, 7, 9, 10}, 50, q, true, kBos);
  EXPECT_EQ(o.positions, (std::vector<int32_t>{0, 1, 2, 3, 7, 8, 9, 9, 10, 50}));
  // One token short of room for both separators: none (a prompt never outgrows the context for them).
  EXPECT_EQ(compressed_prompt({kBos, 10, 20, 30, 31}, {0, 1, 7, 9, 10}, 50, q, false, kBos, 9).tokens,
            (std::vector<model::TokenId>{kBos, 10, 20, 30, 31, 90}));
  EXPECT_EQ(compressed_prompt({kBos, 10, 20, 30, 31}, {0, 1, 7, 9, 10}, 50, q, false, kBos, 10).tokens.size(), 10u);
}

// query.span_order=relevance: the spans in ascending order of their best relevance, so the best one meets
// the question; the span that starts the document (BOS, sink) stays first; ties keep document order.
TEST(CompressedPrompt, RelevanceOrderPutsTheBestSpanLast) {
  QueryPrompt q{.lead = {}, .query = {90}, .separator = {70}};
  q.span_order = SpanOrder::relevance;
  const std::vector<model::TokenId> recalled{kBos, 10, 20, 21, 30, 40};
  const std::vector<int64_t> at{0, 1, 7, 8, 12, 20};  // spans [0,2) [7,9) [12,13) [20,21)
  const std::vector<float> rel{INFINITY, INFINITY, 2.0f, 9.0f, 1.0f, 2.0f};
  const CompressedPrompt c = compressed_prompt(recalled, at, 50, q, false, kBos, -1, rel);
  EXPECT_EQ(c.tokens, (std::vector<model::TokenId>{kBos, 10, 70, 30, 70, 40, 70, 20, 21, 90}));
  std::vector<int32_t> sequential(c.tokens.size());
  std::iota(sequential.begin(), sequential.end(), 0);
  EXPECT_EQ(c.positions, sequential);
  // Document order without relevance, with original positions, or with span_order=document.
  const std::vector<model::TokenId> in_order{kBos, 10, 70, 20, 21, 70, 30, 70, 40, 90};
  EXPECT_EQ(compressed_prompt(recalled, at, 50, q, false, kBos).tokens, in_order);
  EXPECT_EQ(compressed_prompt(recalled, at, 50, q, true, kBos, -1, rel).tokens, in_order);
  q.span_order = SpanOrder::document;
  EXPECT_EQ(compressed_prompt(recalled, at, 50, q, false, kBos, -1, rel).tokens, in_order);
  // A selection without the document's start reorders every span.
  q.span_order = SpanOrder::relevance;
  q.separator.clear();
  EXPECT_EQ(compressed_prompt({20, 21, 30}, {7, 8, 12}, 50, q, false, kBos, -1, std::vector<float>{5, 5, 1}).tokens,
            (std::vector<model::TokenId>{30, 20, 21, 90}));
}

struct StoriesModel {
  std::shared_ptr<const model::Model> model =
      model::Model::load(test::write_tiny_model(test::scratch_dir("prompt"), test::TinyModelSpec{}));
};

TEST(QueryPrompt, PlainTemplateIsTheQueryAlone) {
  StoriesModel s;
  Config cfg;
  cfg.query.template_text = "\nQ: {question}\nA:";
  const QueryPrompt q = query_prompt(cfg, *s.model, "Who had a ball?");
  EXPECT_TRUE(q.lead.empty());
  EXPECT_TRUE(q.separator.empty());
  EXPECT_EQ(q.query, s.model->vocab().tokenize("\nQ: Who had a ball?\nA:", {.add_special = false}));
  cfg.query.span_separator = " ... ";
  EXPECT_EQ(query_prompt(cfg, *s.model, "Who?").separator, s.model->vocab().tokenize(" ... ", {.add_special = false}));
}

// scoring.query=question scores only the question's own tokens: they spell the question, and the rows
// are the whole query under the default.
TEST(QueryPrompt, TheQuestionsTokensAreToldApartFromTheTemplate) {
  StoriesModel s;
  const model::Vocab& v = s.model->vocab();
  for (bool chat : {false, true}) {
    Config cfg;
    cfg.query.chat = chat;
    const QueryPrompt q = query_prompt(cfg, *s.model, "Who had a ball?");
    ASSERT_LT(q.question_begin, q.question_end);
    ASSERT_LE(q.question_end, q.query.size());
    const std::vector<model::TokenId> own(q.query.begin() + static_cast<std::ptrdiff_t>(q.question_begin),
                                          q.query.begin() + static_cast<std::ptrdiff_t>(q.question_end));
    EXPECT_EQ(v.detokenize(own).find("Who had a ball?") != std::string::npos, true) << v.detokenize(own);
    EXPECT_LT(v.detokenize(own).size(), std::string(" Who had a ball?").size() + 2) << v.detokenize(own);
    EXPECT_EQ(scoring_rows(cfg, q), (std::pair<int64_t, int64_t>{0, static_cast<int64_t>(q.query.size())}));
    cfg.scoring.query = "question";
    EXPECT_EQ(scoring_rows(cfg, q), (std::pair<int64_t, int64_t>{static_cast<int64_t>(q.question_begin),
                                                                 static_cast<int64_t>(q.question_end)}));
  }
}

// Lead + document + query spell exactly the user turn the chat template renders around the document.
TEST(QueryPrompt, ChatWrapsDocumentAndQuestionInOneUserTurn) {
  StoriesModel s;
  Config cfg;
  cfg.query.chat = true;
  const QueryPrompt q = query_prompt(cfg, *s.model, "Who had a ball?");
  const model::Vocab& v = s.model->vocab();
  const std::string document = "Lily had a red ball.";
  const std::string rendered = model::chat_template_for(s.model->file(), s.model->hparams())
                                   .apply({{"user", document + "\n\nQuestion: Who had a ball?\nAnswer:"}});
  ASSERT_FALSE(q.lead.empty());
  EXPECT_EQ(v.detokenize(q.lead) + document + v.detokenize(q.query), rendered);
}

// On Gemma the lead is the one control token <start_of_turn> then "user\n", and the query ends where the
// model's turn begins.
TEST(QueryPrompt, GemmaChatUsesItsTurnTokens) {
  const auto path = test::gemma_model();
  if (!path) {
    if (std::getenv("ILRE_REQUIRE_GEMMA")) FAIL() << "Gemma 3 270M is required but was not found";
    GTEST_SKIP() << "Gemma 3 270M not fetched (scripts/fetch-model.sh)";
  }
  const std::shared_ptr<const model::Model> m = model::Model::load(*path);
  const model::Vocab& v = m->vocab();
  Config cfg;
  cfg.query.chat = true;
  const QueryPrompt q = query_prompt(cfg, *m, "What is x?");
  const std::vector<model::TokenId> turn = v.tokenize("<start_of_turn>", {.add_special = false, .parse_special = true});
  ASSERT_EQ(turn.size(), 1u) << "<start_of_turn> is one control token";
  EXPECT_EQ(q.lead.front(), turn.front());
  EXPECT_EQ(q.lead, v.tokenize("<start_of_turn>user\n", {.add_special = false, .parse_special = true}));
  EXPECT_EQ(q.query, v.tokenize("\n\nQuestion: What is x?\nAnswer:<end_of_turn>\n<start_of_turn>model\n",
                                {.add_special = false, .parse_special = true}));
}

}  // namespace
}  // namespace ilre::retrieval
