// The case generator: deterministic from the seed, needles where the spec puts them, token ranges that are
// exactly the planted sentences, answers that the document supports.
#include "eval/suite.h"

#include <gtest/gtest.h>

#include "eval/metrics.h"
#include "ilre/error.h"
#include "model/model.h"
#include "support/paths.h"

namespace ilre::eval {
namespace {

class Suite : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { model_ = model::Model::load(test::data_model("stories260K-f32.gguf")); }
  static void TearDownTestSuite() { model_.reset(); }
  const model::Vocab& vocab() const { return model_->vocab(); }
  // The text of document tokens [start, end).
  std::string piece(const EvalCase& c, TokenRange r) const {
    const auto ids = vocab().tokenize(c.text, {.add_special = true});
    return vocab().detokenize(std::span(ids).subspan(static_cast<size_t>(r.first), static_cast<size_t>(r.second - r.first)));
  }
  static inline std::shared_ptr<const model::Model> model_;
};

TEST_F(Suite, SameSeedSameCase) {
  for (Task t : all_tasks()) {
    for (Filler h : {Filler::noise, Filler::prose}) {
      SCOPED_TRACE(std::string(task_name(t)) + "/" + std::string(filler_name(h)));
      const CaseSpec spec{t, h, 600, 0.3, 0};
      const EvalCase a = make_case(vocab(), spec, {}, 11);
      const EvalCase b = make_case(vocab(), spec, {}, 11);
      EXPECT_EQ(a.text, b.text);
      EXPECT_EQ(a.required, b.required);
      EXPECT_EQ(a.distractors, b.distractors);
      EXPECT_EQ(a.question, b.question);
      EXPECT_EQ(a.answers, b.answers);
      EXPECT_EQ(a.id, b.id);
      const EvalCase c = make_case(vocab(), spec, {}, 12);
      EXPECT_NE(a.answers, c.answers) << "another seed draws other needles";
    }
  }
}

TEST_F(Suite, RangesAreThePlantedSentencesAndHoldTheAnswers) {
  const EvalCase c = make_case(vocab(), {Task::niah_single, Filler::noise, 800, 0.5, 0}, {}, 3);
  ASSERT_EQ(c.required.size(), 1u);
  ASSERT_EQ(c.answers.size(), 1u);
  EXPECT_EQ(c.answers[0].size(), 7u);  // RULER's 7-digit pass keys by default
  const std::string needle = piece(c, c.required[0]);
  EXPECT_NE(needle.find("The pass key for the"), std::string::npos) << needle;
  EXPECT_NE(needle.find(c.answers[0] + "."), std::string::npos) << needle;
  EXPECT_GE(c.n_tokens, 800);
  // Depth 50%: the needle sits in the middle third of the document.
  EXPECT_GT(c.required[0].first, c.n_tokens / 3);
  EXPECT_LT(c.required[0].first, 2 * c.n_tokens / 3);
  EXPECT_NE(c.text.find("The grass is green. The sky is blue."), std::string::npos);
}

TEST_F(Suite, DepthPlacesTheFirstAskedNeedle) {
  const EvalCase first = make_case(vocab(), {Task::niah_single, Filler::prose, 800, 0.0, 0}, {}, 3);
  const EvalCase last = make_case(vocab(), {Task::niah_single, Filler::prose, 800, 1.0, 0}, {}, 3);
  EXPECT_LE(first.required[0].first, 2) << "depth 0: right after BOS";
  EXPECT_GE(last.required[0].second, last.n_tokens - 2) << "depth 1: at the very end";
}

TEST_F(Suite, MultiNeedleTasks) {
  TaskSettings s;
  const EvalCase mk = make_case(vocab(), {Task::niah_multikey, Filler::noise, 1500, 0.2, 0}, s, 5);
  EXPECT_EQ(mk.required.size(), 1u);
  EXPECT_EQ(mk.distractors.size(), static_cast<size_t>(s.distractors));
  for (TokenRange r : mk.distractors) EXPECT_EQ(piece(mk, r).find(mk.answers[0]), std::string::npos);

  const EvalCase mv = make_case(vocab(), {Task::niah_multivalue, Filler::noise, 1500, 0.2, 0}, s, 5);
  EXPECT_EQ(mv.required.size(), static_cast<size_t>(s.values));
  EXPECT_EQ(mv.answers.size(), static_cast<size_t>(s.values));
  EXPECT_NE(mv.question.find("all the pass keys"), std::string::npos);

  const EvalCase mq = make_case(vocab(), {Task::niah_multiquery, Filler::prose, 1500, 0.2, 0}, s, 5);
  EXPECT_EQ(mq.required.size(), static_cast<size_t>(s.queries));
  EXPECT_EQ(mq.answers.size(), static_cast<size_t>(s.queries));
  for (const TokenRange& r : mq.required) {
    int holds = 0;
    for (const std::string& a : mq.answers) holds += piece(mq, r).find(a) != std::string::npos;
    EXPECT_EQ(holds, 1) << piece(mq, r);
  }
}

TEST_F(Suite, VariableTrackingChainInOrder) {
  TaskSettings s;
  s.vt_chains = 2;
  const EvalCase c = make_case(vocab(), {Task::vt, Filler::noise, 1500, 0.1, 0}, s, 9);
  ASSERT_EQ(c.required.size(), static_cast<size_t>(s.vt_hops + 1));
  EXPECT_EQ(c.distractors.size(), static_cast<size_t>(s.vt_hops + 1));
  ASSERT_EQ(c.answers.size(), c.required.size());
  // The chain appears in order: VAR a0 = value, VAR a1 = VAR a0, ...
  EXPECT_NE(piece(c, c.required[0]).find("VAR " + c.answers[0] + " = "), std::string::npos);
  for (size_t i = 1; i < c.required.size(); ++i) {
    EXPECT_GE(c.required[i].first, c.required[i - 1].second);
    EXPECT_NE(piece(c, c.required[i]).find("VAR " + c.answers[i] + " = VAR " + c.answers[i - 1]), std::string::npos)
        << piece(c, c.required[i]);
  }
  const std::string value = c.question.substr(c.question.find("value ") + 6, 5);
  EXPECT_NE(piece(c, c.required[0]).find(value), std::string::npos);
}

TEST_F(Suite, NamesAndValidation) {
  for (Task t : all_tasks()) EXPECT_EQ(task_from_name(task_name(t)), t);
  EXPECT_FALSE(task_from_name("niah_double"));
  EXPECT_EQ(filler_from_name("prose"), Filler::prose);
  EXPECT_FALSE(filler_from_name("essays"));
  TaskSettings bad;
  bad.distractors = 16;
  EXPECT_THROW(make_case(vocab(), {}, bad, 1), Exception);
  EXPECT_THROW(make_case(vocab(), {Task::niah_single, Filler::noise, 100, 1.5, 0}, {}, 1), Exception);
}

}  // namespace
}  // namespace ilre::eval
