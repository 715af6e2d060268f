// Issue acceptance: needles planted at 10%, 50% and 90% depth of a ~100K-token haystack are inside the
// recalled spans for Gemma 3 270M at the default retrieval layer and default settings.
#include <gtest/gtest.h>

#include <cstdlib>

#include "ilre/engine.h"
#include "model/model.h"
#include "eval/haystack.h"
#include "support/paths.h"

namespace ilre {
namespace {

struct Case {
  Case(std::string sentence, double depth, std::string q) : needle{std::move(sentence), depth}, question(std::move(q)) {}
  eval::Needle needle;
  std::string question;
};

TEST(NeedleGemma, HundredThousandTokenHaystackAtThreeDepths) {
  const auto path = test::gemma_model();
  if (!path) {
    if (std::getenv("ILRE_REQUIRE_GEMMA")) FAIL() << "Gemma 3 270M is required but was not found";
    GTEST_SKIP() << "Gemma 3 270M not fetched (scripts/fetch-model.sh)";
  }
  std::vector<Case> cases;
  cases.emplace_back("The password for the old lighthouse is 58213.", 0.10, "What is the password for the old lighthouse?");
  cases.emplace_back("Captain Mira keeps the spare key under the blue stone by the gate.", 0.50,
                     "Where does Captain Mira keep the spare key?");
  cases.emplace_back("The last train to Oslo leaves at seventeen minutes past nine.", 0.90,
                     "When does the last train to Oslo leave?");
  Config cfg;  // defaults, as a user gets them (ILRE_* variables may vary them when investigating)
  ASSERT_TRUE(apply_environment(cfg));
  cfg.model.path = *path;
  cfg.decode.max_tokens = 0;  // recall only: the test is about which tokens come back
  auto engine = Engine::open(cfg);
  ASSERT_TRUE(engine) << engine.error().what();
  auto model = model::Model::load(*path);
  std::vector<eval::Needle> needles;
  for (const Case& c : cases) needles.push_back(c.needle);
  const eval::Haystack hay = eval::make_haystack(model->vocab(), 100000, needles, 42);
  ASSERT_GE(hay.n_tokens, 100000);

  const std::string dir = test::scratch_dir("needle") + "/store";
  auto rep = (*engine)->ingest_text(hay.text, dir, {});
  ASSERT_TRUE(rep) << rep.error().what();
  EXPECT_EQ(rep->total_tokens, hay.n_tokens);
  std::printf("[ needle ] ingested %lld tokens at layer %d in %.1f s (%.0f tok/s), keys %.2fx smaller on disk\n",
              static_cast<long long>(rep->total_tokens), rep->layer, rep->timings_ms.at("total") / 1000.0,
              rep->tokens_per_second, rep->key_compression_ratio);

  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].question);
    auto a = (*engine)->ask(dir, cases[i].question, {});
    ASSERT_TRUE(a) << a.error().what();
    const auto [start, end] = hay.needle_tokens[i];
    int64_t inside = 0;
    for (int64_t t = start; t < end; ++t) {
      for (auto [s, e] : a->spans) inside += s <= t && t < e;
    }
    std::printf("[ needle ] depth %.0f%%: %lld/%lld needle tokens recalled (budget %lld of %lld tokens, %zu spans, %.0f ms)\n",
                cases[i].needle.depth * 100, static_cast<long long>(inside), static_cast<long long>(end - start),
                static_cast<long long>(a->recalled), static_cast<long long>(a->context_tokens), a->spans.size(),
                a->timings_ms.at("total"));
    EXPECT_EQ(inside, end - start);
  }
}

}  // namespace
}  // namespace ilre
