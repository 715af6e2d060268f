// qa_real on stories260K with documents the test writes: evidence found whitespace-insensitively and
// mapped to exactly its tokens, contexts of the asked length, recall and answers per budget, the passage
// reference, the split, the layer probe, and clear errors for a missing or changed document.
#include "eval/qa_real.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>

#include "../api/stories_fixture.h"
#include "ilre/error.h"
#include "model/model.h"
#include "support/paths.h"

namespace fs = std::filesystem;

namespace ilre::eval {
namespace {

const char* kEvidence = "The magic word of the old garden is pumpkin.";

std::string story(int sentences, bool plant) {
  std::string s = test::sentences_of({"Tom saw a big dog. ", "The sun was warm and bright. ", "Lily had a red ball. ",
                                      "They played in the park all day. ", "Mom made a cake for them. "},
                                     sentences);
  if (plant) {
    s.insert(s.size() / 2, "The magic word of the old\n  garden is pumpkin. ");
    s.insert(s.size() / 4, "Lily kept a green kite in the shed. ");
  }
  return s;
}

void write(const fs::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << text;
}

void write_gz(const fs::path& p, const std::string& text) {
  gzFile f = gzopen(p.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, text.data(), static_cast<unsigned>(text.size())), static_cast<int>(text.size()));
  gzclose(f);
}

std::string question_file(const std::string& doc, const std::string& evidence) {
  return "document: \"garden\"\npackage: \"garden-doc\"\npath: \"" + doc + "\"\nquestions:\n"
         "  - id: \"garden-01\"\n    question: \"What is the magic word of the old garden?\"\n"
         "    answer: \"pumpkin\"\n    aliases: [\"a pumpkin\"]\n    evidence: \"" + evidence + "\"\n    heldout: false\n"
         "  - id: \"garden-02\"\n    question: \"What did Lily keep in the shed?\"\n    answer: \"green kite\"\n"
         "    evidence: \"Lily kept a green kite in the shed.\"\n    heldout: true\n";
}

class QaReal : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { model_ = model::Model::load(test::data_model("stories260K-f32.gguf")); }
  static void TearDownTestSuite() { model_.reset(); }
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ilre-qa-real-" + std::to_string(::getpid()));
    fs::create_directories(dir_ / "filler");
    doc_text_ = story(60, true);
    write_gz(dir_ / "garden.txt.gz", doc_text_);
    write(dir_ / "garden.yaml", question_file((dir_ / "garden.txt.gz").string(), kEvidence));
    write(dir_ / "filler" / "a.txt", story(80, false));
    write(dir_ / "filler" / "b.txt", story(90, false));
    write(dir_ / "filler" / "c.txt", story(200, false));
  }
  void TearDown() override { fs::remove_all(dir_); }

  QaRealSettings settings() const {
    QaRealSettings s;
    s.documents = {(dir_ / "garden.yaml").string()};
    s.lengths = {0, 3000};
    s.filler = {(dir_ / "filler").string()};
    s.budgets = {48, 4096};
    return s;
  }
  QaRun run(const QaRealSettings& s, const Config& cfg = test::stories_config()) const {
    model::ComputePool pool(1);
    return run_qa_real(*model_, pool, cfg, 2, s, {"ilre", "full"}, 8, true);
  }

  static inline std::shared_ptr<const model::Model> model_;
  fs::path dir_;
  std::string doc_text_;
};

TEST(QaRealText, EvidenceIsFoundWhateverTheWhitespace) {
  const std::string text = "Intro.\n\nThe  default\n   value is\t500 ms.  Then more.";
  const auto [a, b] = find_collapsed(text, "The default value is 500 ms.");
  EXPECT_EQ(text.substr(a, b - a), "The  default\n   value is\t500 ms.");
  EXPECT_THROW(find_collapsed(text, "The default value is 600 ms."), Exception);
  EXPECT_THROW(find_collapsed("a b. a b.", "a b."), Exception);  // twice: ambiguous
  EXPECT_THROW(find_collapsed(text, "  \n "), Exception);
}

TEST_F(QaReal, LoadsAGzipDocumentAndLocatesEveryEvidence) {
  const QaDocument d = load_qa_document((dir_ / "garden.yaml").string());
  EXPECT_EQ(d.text, doc_text_);
  ASSERT_EQ(d.questions.size(), 2u);
  const auto [a, b] = d.questions[0].evidence_bytes;
  EXPECT_EQ(d.text.substr(a, b - a), "The magic word of the old\n  garden is pumpkin.");
  EXPECT_TRUE(d.questions[1].heldout);
  EXPECT_TRUE(qa_correct(" It is a pumpkin.", d.questions[0]));
  EXPECT_TRUE(qa_correct("Pumpkin", d.questions[0]));
  EXPECT_FALSE(qa_correct("pumpkins grow", d.questions[0])) << "words, not substrings";
  QaQuestion n;
  n.answer = "-1";
  EXPECT_TRUE(qa_correct("It returns -1.", n));
  EXPECT_FALSE(qa_correct("It returns 1.", n));
  EXPECT_FALSE(qa_correct("128", n));
  n.answer = "CORE::dump()";
  EXPECT_TRUE(qa_correct("call CORE::dump() instead", n));
  n.answer = "2**61 - 1";
  EXPECT_TRUE(qa_correct("2**61 - 1", n));
  EXPECT_FALSE(qa_correct("2**61", n));
}

TEST_F(QaReal, MissingOrChangedDocumentsAreClearErrors) {
  write(dir_ / "missing.yaml", question_file((dir_ / "nowhere.txt").string(), kEvidence));
  try {
    load_qa_document((dir_ / "missing.yaml").string());
    FAIL() << "a missing document must fail";
  } catch (const Exception& e) {
    EXPECT_NE(std::string(e.what()).find("apt-get install garden-doc"), std::string::npos) << e.what();
  }
  write(dir_ / "changed.yaml", question_file((dir_ / "garden.txt.gz").string(), "The magic word is turnip."));
  try {
    load_qa_document((dir_ / "changed.yaml").string());
    FAIL() << "an evidence sentence the document lacks must fail";
  } catch (const Exception& e) {
    EXPECT_NE(std::string(e.what()).find("garden-01"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("another version"), std::string::npos) << e.what();
  }
  write(dir_ / "bad.yaml", "document: \"x\"\npackage: \"p\"\npath: \"/x\"\nquestions: []\n");
  EXPECT_THROW(load_qa_document((dir_ / "bad.yaml").string()), Exception);
  EXPECT_THROW(load_qa_document((dir_ / "absent.yaml").string()), Exception);
  QaRealSettings s = settings();
  s.lengths = {0, 100};  // shorter than the document itself
  EXPECT_THROW(run(s), Exception);
  s = settings();
  s.probe_layers = {1};  // the probe keeps every layer: documents alone only
  EXPECT_THROW(s.validate(), Exception);
}

// With plain RoPE (decode.dca: off) the final pass is held to the trained window: budgets are clamped
// and `full` is skipped where the context does not fit.
TEST_F(QaReal, ContextsRecallAndAnswerPerBudget) {
  Config plain = test::stories_config();
  plain.decode.dca = "off";
  const QaRun r = run(settings(), plain);
  ASSERT_EQ(r.contexts.size(), 2u);
  EXPECT_EQ(r.contexts[0].name, "garden");
  EXPECT_EQ(r.contexts[1].name, "all@3000");
  EXPECT_EQ(r.contexts[1].n_tokens, 3000) << "filler pads the context to exactly the asked length";
  ASSERT_EQ(r.passages.size(), 2u);
  for (const QaContextOutcome& c : r.contexts) {
    ASSERT_EQ(c.questions.size(), 2u);
    const QaQuestionOutcome& q = c.questions[0];
    // The evidence range is the planted sentence's tokens and nothing more.
    ASSERT_GT(q.evidence.second, q.evidence.first);
    ASSERT_EQ(q.methods.size(), 3u);  // ilre at two budgets, full
    for (const QaMethodOutcome& m : q.methods) {
      EXPECT_TRUE(m.answered || m.skipped);
      EXPECT_GE(m.cover, 0.0);
      EXPECT_LE(m.cover, 1.0);
    }
    EXPECT_EQ(q.methods[0].budget, 48);
    // A budget beyond the trained window is clamped so recalled tokens + query + answer fit it.
    EXPECT_EQ(q.methods[1].budget, 4096) << "reported as asked";
    EXPECT_LT(q.methods[1].recalled, 512);
    EXPECT_LE(q.methods[1].prompt_tokens + 8, 512);
    EXPECT_GE(q.methods[1].prompt_tokens + 8, 500);
    EXPECT_GE(q.methods[1].cover, q.methods[0].cover * 0.5);
    EXPECT_EQ(q.methods[2].method, "full");
    if (!q.methods[2].skipped) {
      EXPECT_DOUBLE_EQ(q.methods[2].cover, 1.0);
    }
  }
  EXPECT_TRUE(r.contexts[1].questions[0].methods[2].skipped) << "3000 tokens exceed stories260K's 512";
  // The long context holds the document at a depth: its evidence moved by the filler before it.
  EXPECT_GT(r.contexts[1].questions[0].evidence.first, r.contexts[0].questions[0].evidence.first);
  EXPECT_EQ(r.contexts[1].questions[0].evidence.second - r.contexts[1].questions[0].evidence.first,
            r.contexts[0].questions[0].evidence.second - r.contexts[0].questions[0].evidence.first);
  const std::string md = qa_markdown(r);
  EXPECT_NE(md.find("| document alone | ilre | 48 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| all@3000 | ilre | 4096 |"), std::string::npos) << md;
  EXPECT_NE(md.find("Passage alone"), std::string::npos) << md;
  const nlohmann::json j = to_json(r);
  EXPECT_EQ(j["contexts"][1]["tokens"], 3000);
}

// decode.dca: auto (the default) lets the final pass run past the trained window with dual chunk
// attention: `full` answers over the 3000-token context, and a 4096 budget recalls all of it.
TEST_F(QaReal, PastTheWindowWithDca) {
  const QaRun r = run(settings());
  const QaQuestionOutcome& q = r.contexts[1].questions[0];
  ASSERT_EQ(q.methods.size(), 3u);
  EXPECT_FALSE(q.methods[2].skipped);
  EXPECT_TRUE(q.methods[2].answered);
  EXPECT_TRUE(q.methods[2].dca);
  EXPECT_DOUBLE_EQ(q.methods[2].cover, 1.0);
  EXPECT_EQ(q.methods[1].recalled, 3000);
  EXPECT_TRUE(q.methods[1].dca);
  EXPECT_FALSE(q.methods[0].dca) << "a 48-token budget stays inside the window";
  EXPECT_FALSE(r.contexts[0].questions[0].methods[0].dca);
}

TEST_F(QaReal, EvidenceTokensSpellTheEvidence) {
  QaRealSettings s = settings();
  s.lengths = {0};
  s.answer = false;
  const QaRun r = run(s);
  const QaQuestionOutcome& q = r.contexts[0].questions[0];
  std::vector<model::TokenId> ids = model_->vocab().tokenize(doc_text_, {.add_special = true});
  const std::string text = model_->vocab().detokenize(
      std::span(ids).subspan(static_cast<size_t>(q.evidence.first), static_cast<size_t>(q.evidence.second - q.evidence.first)));
  EXPECT_NE(text.find("magic word of the old"), std::string::npos) << text;
  EXPECT_NE(text.find("pumpkin."), std::string::npos) << text;
  EXPECT_EQ(text.find("Tom"), std::string::npos) << text;
  EXPECT_TRUE(r.passages.empty()) << "recall only: no final passes";
  EXPECT_FALSE(r.contexts[0].questions[0].methods[0].answered);
}

TEST_F(QaReal, SplitAndProbe) {
  QaRealSettings s = settings();
  s.lengths = {0};
  s.answer = false;
  s.split = "heldout";
  s.probe_layers = {1, 2};
  const QaRun r = run(s);
  ASSERT_EQ(r.contexts[0].questions.size(), 1u);
  const QaQuestionOutcome& q = r.contexts[0].questions[0];
  EXPECT_EQ(q.id, "garden-02");
  ASSERT_EQ(q.probe_cover.size(), 2u);
  ASSERT_EQ(q.probe_cover[1].size(), 2u);
  // The probe at the run's own layer (2) sees the keys the run scored.
  EXPECT_NEAR(q.probe_cover[1][0], q.methods[0].cover, 1e-9);
  EXPECT_DOUBLE_EQ(q.probe_cover[0][1], 1.0);
  EXPECT_NE(qa_markdown(r).find("per layer"), std::string::npos);
}

// A combined row adds the layers' attention scores before pooling: a layer combined with itself doubles
// every score and must recall exactly what it recalls alone; two different layers give a row of their own.
TEST_F(QaReal, ProbeCombinesLayers) {
  QaRealSettings s = settings();
  s.lengths = {0};
  s.answer = false;
  s.probe_layers = {1, 2};
  s.probe_combine = {{1, 2}, {2, 2}};
  const QaRun r = run(s);
  for (const QaContextOutcome& c : r.contexts) {
    for (const QaQuestionOutcome& q : c.questions) {
      ASSERT_EQ(q.probe_cover.size(), 4u);
      EXPECT_EQ(q.probe_cover[3], q.probe_cover[1]) << q.id;
      for (double v : q.probe_cover[2]) {
        EXPECT_GE(v, 0.0);
        EXPECT_LE(v, 1.0);
      }
    }
  }
  EXPECT_NE(qa_markdown(r).find("| 1+2 |"), std::string::npos);
  QaRealSettings bad = s;
  bad.probe_combine = {{1, 3}};
  EXPECT_THROW(bad.validate(), Exception);
  bad.probe_combine = {{1}};
  EXPECT_THROW(bad.validate(), Exception);
}

}  // namespace
}  // namespace ilre::eval
