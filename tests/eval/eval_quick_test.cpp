// Issue acceptance: configs/eval-quick.yaml's stories260K entry end to end (every task, haystack and
// method), then the report's structure, and that every recall number follows from the recalled indices.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "eval/report.h"
#include "eval/run.h"
#include "eval/suite_config.h"
#include "ilre/config.h"
#include "support/paths.h"
#include "svg_check.h"

namespace ilre::eval {
namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The recalled indices written as spans, expanded back.
std::vector<int64_t> indices_of(const std::vector<TokenRange>& spans) {
  std::vector<int64_t> out;
  for (const auto& [s, e] : spans) {
    for (int64_t i = s; i < e; ++i) out.push_back(i);
  }
  return out;
}

// What one run of the stories260K entry produced; built once, because ctest runs every test case in its
// own process and the run is the expensive part.
struct QuickRun {
  ModelEntry entry;
  ModelRun run;
  ReportFiles files;
};

void check_entry(const QuickRun& q) {
  EXPECT_EQ(q.entry.name, "stories260K-f32");
  EXPECT_EQ(q.entry.settings.methods, method_names()) << "eval-quick runs every method";
  EXPECT_EQ(q.entry.settings.tasks, all_tasks());
  EXPECT_EQ(q.run.n_ctx_train, 512);
  EXPECT_EQ(q.run.fingerprint.size(), 16u);
}

void check_cases(const QuickRun& q) {
  const EvalSettings& s = q.entry.settings;
  ASSERT_EQ(q.run.cases.size(), s.lengths.size() * s.depths.size() * s.tasks.size() * s.haystacks.size() *
                                   static_cast<size_t>(s.samples));
  int full_ran = 0;
  for (const CaseOutcome& c : q.run.cases) {
    SCOPED_TRACE(c.id);
    ASSERT_EQ(c.methods.size(), s.methods.size());
    EXPECT_GE(c.n_tokens, c.spec.length);
    EXPECT_FALSE(c.required.empty());
    for (size_t m = 0; m < s.methods.size(); ++m) {
      const MethodOutcome& o = c.methods[m];
      EXPECT_EQ(o.method, s.methods[m]);
      const bool fits = c.n_tokens + c.n_query + s.max_answer_tokens <= q.run.n_ctx_train;
      // Past the trained window `full` runs with dual chunk attention (decode.dca: auto); nothing is skipped.
      EXPECT_FALSE(o.skipped);
      if (o.method == "full") {
        EXPECT_EQ(o.dca, !fits);
        full_ran += !fits;
      } else {
        EXPECT_FALSE(o.dca) << "a 192-token budget stays inside the window";
      }
      if (o.skipped) continue;
      EXPECT_EQ(o.recalled, o.method == "full" ? c.n_tokens : std::min(c.budget, c.n_tokens));
      EXPECT_EQ(o.prompt_tokens, o.recalled + c.n_query);
      EXPECT_GE(o.score.score, 0.0);
      EXPECT_LE(o.score.score, 1.0);
      EXPECT_GT(o.ttft_ms, 0.0);
      EXPECT_GT(o.peak_rss_mb, 0.0);
    }
  }
  EXPECT_GT(full_ran, 0) << "1K and 2K tokens outgrow the 512-token context";
}

void check_recall(const QuickRun& q) {
  int64_t checked = 0;
  for (const CaseOutcome& c : q.run.cases) {
    for (const MethodOutcome& o : c.methods) {
      if (o.skipped) continue;
      SCOPED_TRACE(c.id + " " + o.method);
      const std::vector<int64_t> idx = indices_of(o.spans);  // eval-quick saves the spans
      ASSERT_EQ(static_cast<int64_t>(idx.size()), o.recalled);
      int64_t hit = 0, total = 0;
      for (size_t k = 0; k < c.required.size(); ++k) {
        const auto [start, end] = c.required[k];
        int64_t inside = 0;
        for (int64_t t = start; t < end; ++t) inside += std::binary_search(idx.begin(), idx.end(), t);
        EXPECT_EQ(inside, o.needle_hits[k]);
        hit += inside;
        total += end - start;
      }
      EXPECT_DOUBLE_EQ(o.recall, static_cast<double>(hit) / static_cast<double>(total));
      ++checked;
      // Every method keeps the sink.
      for (int64_t i = 0; i < std::min(q.run.sink, o.recalled); ++i) EXPECT_EQ(idx[static_cast<size_t>(i)], i);
    }
  }
  EXPECT_GT(checked, 500);
}

void check_streaming(const QuickRun& q) {
  // A single needle at depth 100% sits inside the most recent tokens whatever the model does.
  int seen = 0;
  for (const CaseOutcome& c : q.run.cases) {
    if (c.spec.task != Task::niah_single || c.spec.depth != 1.0) continue;
    for (const MethodOutcome& o : c.methods) {
      if (o.method == "streaming") {
        EXPECT_DOUBLE_EQ(o.recall, 1.0) << c.id;
      }
    }
    ++seen;
  }
  EXPECT_GT(seen, 0);
}

void check_files(const QuickRun& q) {
  const nlohmann::json j = nlohmann::json::parse(slurp(q.files.json));
  ASSERT_EQ(j["models"].size(), 1u);
  const auto& m = j["models"][0];
  EXPECT_EQ(m["cases"].size(), q.run.cases.size());
  EXPECT_EQ(m["seed"], q.entry.settings.seed);
  EXPECT_EQ(m["fingerprint"], q.run.fingerprint);
  for (const std::string& method : q.entry.settings.methods) {
    EXPECT_TRUE(m["summary"].contains(method)) << method;
    EXPECT_TRUE(m["cases"][0]["methods"].contains(method)) << method;
  }
  const std::string md = slurp(q.files.markdown);
  EXPECT_NE(md.find("| method | 256 | 1K | 2K | all |"), std::string::npos) << md;
  for (const std::string& method : q.entry.settings.methods) {
    EXPECT_NE(md.find("\n| " + method + " | "), std::string::npos) << method;
  }
  EXPECT_EQ(q.files.heatmaps.size(), 2 * q.entry.settings.methods.size());
  for (const std::string& h : q.files.heatmaps) EXPECT_EQ(test::svg_problem(slurp(h)), "") << h;
  EXPECT_NE(slurp(q.files.configs[0]).find("layer: " + std::to_string(q.run.layer)), std::string::npos);
}

TEST(EvalQuick, Stories260KEndToEnd) {
  QuickRun q;
  const EvalConfig ec = load_eval_config(std::string(ILRE_SOURCE_DIR) + "/configs/eval-quick.yaml");
  const std::string path = test::data_model("stories260K-f32.gguf");
  q.entry = entry_for_model(ec, path);
  auto cfg = parse_config(q.entry.ilre_yaml, "eval-quick ilre");
  ASSERT_TRUE(cfg) << cfg.error().what();
  cfg->model.path = path;
  // One thread: the model is tiny, and a second thread only waits at barriers when the machine is busy.
  cfg->model.threads = 1;
  q.run = run_model(q.entry, *cfg);
  q.files = write_report(test::scratch_dir("eval-quick"), {q.run}, {{"config", "configs/eval-quick.yaml"}});
  {
    SCOPED_TRACE("entry");
    check_entry(q);
  }
  {
    SCOPED_TRACE("cases");
    check_cases(q);
  }
  {
    SCOPED_TRACE("recall from indices");
    check_recall(q);
  }
  {
    SCOPED_TRACE("streaming");
    check_streaming(q);
  }
  {
    SCOPED_TRACE("report files");
    check_files(q);
  }
}

}  // namespace
}  // namespace ilre::eval
