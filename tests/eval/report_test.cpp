// The report from a hand-made run: summary means, JSON keys, Markdown rows and well-formed SVG.
#include "eval/report.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "support/paths.h"
#include "svg_check.h"

namespace ilre::eval {
namespace {

MethodOutcome outcome(const std::string& method, double recall, double score, bool skipped = false) {
  MethodOutcome m;
  m.method = method;
  m.skipped = skipped;
  if (skipped) {
    m.skip_reason = "exceeds context";
    return m;
  }
  m.recall = recall;
  m.score.score = score;
  m.score.exact = score == 1.0;
  m.score.contains = score == 1.0;
  m.ttft_ms = 10;
  m.end_to_end_ms = 20;
  return m;
}

// Two lengths x two depths of niah_single; "ilre" recalls better at the short length, "full" only fits
// the short one.
ModelRun hand_made_run() {
  ModelRun r;
  r.name = "tiny & model";
  r.path = "/m/tiny.gguf";
  r.fingerprint = "abc";
  r.layer = 1;
  r.settings.lengths = {1000, 4096};
  r.settings.depths = {0.0, 1.0};
  r.settings.tasks = {Task::niah_single};
  r.settings.haystacks = {Filler::noise};
  r.settings.methods = {"full", "ilre"};
  r.config_yaml = "prefill:\n  layer: 1\n";
  for (int64_t len : {1000, 4096}) {
    for (double depth : {0.0, 1.0}) {
      CaseOutcome c;
      c.spec = {Task::niah_single, Filler::noise, len, depth, 0};
      c.id = "case-" + std::to_string(len) + "-" + std::to_string(depth);
      c.methods.push_back(outcome("full", 1.0, depth == 0.0 ? 1.0 : 0.0, len > 1000));
      c.methods.push_back(outcome("ilre", len == 1000 ? 0.9 : 0.5, depth == 0.0 ? 1.0 : 0.5));
      r.cases.push_back(c);
    }
  }
  return r;
}

TEST(Report, SummaryMeans) {
  const Summary s = summarize(hand_made_run());
  ASSERT_EQ(s.methods, (std::vector<std::string>{"full", "ilre"}));
  EXPECT_EQ(s.by_length[0][0].n, 2);
  EXPECT_DOUBLE_EQ(s.by_length[0][0].accuracy, 0.5);
  EXPECT_EQ(s.by_length[0][1].n, 0);
  EXPECT_EQ(s.by_length[0][1].skipped, 2);
  EXPECT_DOUBLE_EQ(s.by_length[1][0].recall, 0.9);
  EXPECT_DOUBLE_EQ(s.by_length[1][1].recall, 0.5);
  EXPECT_DOUBLE_EQ(s.by_length[1][1].accuracy, 0.75);
  EXPECT_DOUBLE_EQ(s.overall[1].recall, 0.7);
  EXPECT_DOUBLE_EQ(s.by_depth_length[1][1][0].accuracy, 0.5);  // ilre, depth 100%, 1000 tokens
  EXPECT_DOUBLE_EQ(s.by_task[1][0].exact, 0.5);
}

TEST(Report, JsonHasEveryCaseAndMethod) {
  const nlohmann::json j = results_json({hand_made_run()}, {{"config", "x.yaml"}});
  EXPECT_EQ(j["format"], "ilre-eval/1");
  EXPECT_EQ(j["meta"]["config"], "x.yaml");
  const auto& m = j["models"][0];
  for (const char* key : {"name", "path", "fingerprint", "layer", "seed", "settings", "method_settings", "ilre_config",
                          "summary", "cases", "n_ctx_train"}) {
    EXPECT_TRUE(m.contains(key)) << key;
  }
  ASSERT_EQ(m["cases"].size(), 4u);
  const auto& c = m["cases"][3];
  for (const char* key : {"id", "task", "haystack", "length", "depth", "budget", "needles", "answers", "prefill_ms", "methods"}) {
    EXPECT_TRUE(c.contains(key)) << key;
  }
  EXPECT_EQ(c["methods"]["full"]["status"], "skipped");
  EXPECT_EQ(c["methods"]["full"]["reason"], "exceeds context");
  EXPECT_EQ(c["methods"]["ilre"]["status"], "ok");
  EXPECT_DOUBLE_EQ(c["methods"]["ilre"]["recall"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(m["summary"]["ilre"]["by_length"]["1000"]["recall"].get<double>(), 0.9);
}

TEST(Report, MarkdownTableRowPerMethod) {
  const std::string md = markdown_report({hand_made_run()}, {{"config", "x.yaml"}});
  EXPECT_NE(md.find("## tiny & model"), std::string::npos);
  EXPECT_NE(md.find("| method | 1000 | 4K | all |"), std::string::npos) << md;
  EXPECT_NE(md.find("| full | 50% / 100% | skipped | 50% / 100% |"), std::string::npos) << md;
  EXPECT_NE(md.find("| ilre | 75% / 90% | 75% / 50% | 75% / 70% |"), std::string::npos) << md;
}

TEST(Report, HeatmapIsWellFormedSvg) {
  const ModelRun run = hand_made_run();
  const Summary s = summarize(run);
  const std::string svg = heatmap_svg(s, 0, HeatmapMetric::accuracy, run.name + " — full");
  EXPECT_EQ(test::svg_problem(svg), "");
  EXPECT_NE(svg.find("tiny &amp; model"), std::string::npos) << "the title is escaped";
  EXPECT_NE(svg.find("context length (tokens)"), std::string::npos);
  EXPECT_NE(svg.find("needle depth"), std::string::npos);
  EXPECT_NE(svg.find(">n/a<"), std::string::npos) << "full has no run at 4K";
  EXPECT_NE(svg.find(">4K<"), std::string::npos);
  EXPECT_NE(svg.find(">100%<"), std::string::npos);
  // 2 depths x 2 lengths cells + the background, the legend bar and the n/a swatch.
  size_t rects = 0;
  for (size_t at = svg.find("<rect "); at != std::string::npos; at = svg.find("<rect ", at + 1)) ++rects;
  EXPECT_EQ(rects, 7u);
}

TEST(Report, SvgCheckCatchesBrokenXml) {
  EXPECT_EQ(test::svg_problem("<svg a=\"1\"><g/><text>x &amp; y</text></svg>"), "");
  EXPECT_NE(test::svg_problem("<svg><g></svg>"), "");
  EXPECT_NE(test::svg_problem("<svg><text>a & b</text></svg>"), "");
  EXPECT_NE(test::svg_problem("<svg x=1></svg>"), "");
  EXPECT_NE(test::svg_problem("<svg></svg><svg></svg>"), "");
  EXPECT_NE(test::svg_problem("<html></html>"), "");
}

TEST(Report, WritesAllFiles) {
  const std::string dir = test::scratch_dir("eval-report");
  const ReportFiles f = write_report(dir, {hand_made_run()}, {});
  EXPECT_TRUE(std::filesystem::exists(f.json));
  EXPECT_TRUE(std::filesystem::exists(f.markdown));
  ASSERT_EQ(f.heatmaps.size(), 4u);  // 2 methods x {accuracy, recall}
  for (const std::string& h : f.heatmaps) {
    std::ifstream in(h);
    std::stringstream ss;
    ss << in.rdbuf();
    EXPECT_EQ(test::svg_problem(ss.str()), "") << h;
  }
  EXPECT_EQ(std::filesystem::path(f.heatmaps[0]).parent_path().filename(), "tiny___model");
  ASSERT_EQ(f.configs.size(), 1u);
  EXPECT_TRUE(std::filesystem::exists(f.configs[0]));
}

TEST(Report, LengthLabels) {
  EXPECT_EQ(length_label(256), "256");
  EXPECT_EQ(length_label(4096), "4K");
  EXPECT_EQ(length_label(131072), "128K");
  EXPECT_EQ(length_label(1 << 20), "1M");
  EXPECT_EQ(length_label(5000), "5000");
}

}  // namespace
}  // namespace ilre::eval
