#include "engine/metrics.h"

#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/pipeline.h"
#include "test_stages.h"

namespace ilre::engine {
namespace {

using test::AddStage;
using test::CollectSink;
using test::CountSource;

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

bool has_line(const std::vector<std::string>& lines, const std::string& line) {
  return std::find(lines.begin(), lines.end(), line) != lines.end();
}

TEST(Metrics, SnapshotAndPrometheusTextOfADeterministicRun) {
  ManualExecutor ex;
  MetricsRegistry registry;
  PipelineOptions opt;
  opt.mailbox_capacity = 2;
  opt.registry = &registry;
  Pipeline p("doc-1", opt);
  auto src = p.emplace<CountSource>(5);
  auto mid = p.add(std::make_unique<AddStage>(), "double");
  auto sink = p.emplace<CollectSink>();
  p.connect(src, mid);
  p.connect(mid, sink);
  RunHandle run = std::move(p).run(ex);
  ex.run_until_idle();
  ASSERT_TRUE(run.wait());

  MetricsSnapshot snap = registry.snapshot();
  ASSERT_EQ(snap.stages.size(), 3u);
  EXPECT_EQ(snap.stages[0].stage, "src");
  EXPECT_EQ(snap.stages[1].stage, "double");
  EXPECT_EQ(snap.stages[2].stage, "sink");
  const auto* d = snap.find("doc-1", "double");
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->messages_in, 5u);
  EXPECT_EQ(d->messages_out, 5u);
  EXPECT_EQ(d->items_in, 5u);
  EXPECT_EQ(d->items_out, 10u);
  EXPECT_EQ(d->queue_depth, 0u);
  EXPECT_EQ(d->queue_high_water, 2u);
  EXPECT_GT(d->busy_ns, 0u);

  std::string text = registry.to_prometheus();
  auto lines = lines_of(text);
  const std::vector<std::string> expected = {
      "# HELP ilre_stage_messages_in_total Messages a stage took from its input mailbox.",
      "# TYPE ilre_stage_messages_in_total counter",
      "ilre_stage_messages_in_total{pipeline=\"doc-1\",stage=\"src\"} 0",
      "ilre_stage_messages_in_total{pipeline=\"doc-1\",stage=\"double\"} 5",
      "ilre_stage_messages_in_total{pipeline=\"doc-1\",stage=\"sink\"} 5",
      "# HELP ilre_stage_messages_out_total Messages a stage delivered to its output mailbox.",
      "# TYPE ilre_stage_messages_out_total counter",
      "ilre_stage_messages_out_total{pipeline=\"doc-1\",stage=\"src\"} 5",
      "ilre_stage_messages_out_total{pipeline=\"doc-1\",stage=\"double\"} 5",
      "ilre_stage_messages_out_total{pipeline=\"doc-1\",stage=\"sink\"} 0",
      "# HELP ilre_stage_items_in_total Stage-defined units consumed (e.g. tokens).",
      "# TYPE ilre_stage_items_in_total counter",
      "ilre_stage_items_in_total{pipeline=\"doc-1\",stage=\"src\"} 0",
      "ilre_stage_items_in_total{pipeline=\"doc-1\",stage=\"double\"} 5",
      "ilre_stage_items_in_total{pipeline=\"doc-1\",stage=\"sink\"} 0",
      "# HELP ilre_stage_items_out_total Stage-defined units produced (e.g. tokens).",
      "# TYPE ilre_stage_items_out_total counter",
      "ilre_stage_items_out_total{pipeline=\"doc-1\",stage=\"src\"} 0",
      "ilre_stage_items_out_total{pipeline=\"doc-1\",stage=\"double\"} 10",
      "ilre_stage_items_out_total{pipeline=\"doc-1\",stage=\"sink\"} 0",
  };
  ASSERT_GE(lines.size(), expected.size());
  EXPECT_EQ(std::vector<std::string>(lines.begin(), lines.begin() + expected.size()), expected);
  EXPECT_TRUE(has_line(lines, "# TYPE ilre_stage_busy_seconds_total counter"));
  EXPECT_TRUE(has_line(lines, "# TYPE ilre_stage_stall_seconds_total counter"));
  EXPECT_TRUE(has_line(lines, "# TYPE ilre_stage_queue_depth gauge"));
  EXPECT_TRUE(has_line(lines, "ilre_stage_queue_depth{pipeline=\"doc-1\",stage=\"double\"} 0"));
  EXPECT_TRUE(has_line(lines, "ilre_stage_queue_depth_max{pipeline=\"doc-1\",stage=\"double\"} 2"));
  EXPECT_TRUE(has_line(lines, "ilre_stage_queue_depth_max{pipeline=\"doc-1\",stage=\"sink\"} 2"));
  EXPECT_TRUE(has_line(lines, "ilre_stage_queue_depth_max{pipeline=\"doc-1\",stage=\"src\"} 0"));
  // Every sample line is `name{labels} number`.
  int samples = 0;
  for (const auto& l : lines) {
    if (l.empty() || l[0] == '#') continue;
    ++samples;
    auto sp = l.rfind(' ');
    ASSERT_NE(sp, std::string::npos) << l;
    EXPECT_NO_THROW((void)std::stod(l.substr(sp + 1))) << l;
  }
  EXPECT_EQ(samples, 8 * 3);
  EXPECT_EQ(lines_of(registry.to_prometheus("x_"))[1], "# TYPE x_stage_messages_in_total counter");
}

TEST(Metrics, LabelValuesAreEscaped) {
  MetricsSnapshot snap;
  snap.stages.push_back(StageMetricsSnapshot{"a\"b\\c\nd", "s", 1, 0, 0, 0, 1500000000, 0, 0, 0});
  auto lines = lines_of(to_prometheus(snap));
  EXPECT_TRUE(has_line(lines, "ilre_stage_messages_in_total{pipeline=\"a\\\"b\\\\c\\nd\",stage=\"s\"} 1"));
  EXPECT_TRUE(has_line(lines, "ilre_stage_busy_seconds_total{pipeline=\"a\\\"b\\\\c\\nd\",stage=\"s\"} 1.5"));
}

TEST(Metrics, RegistryRejectsADuplicateLiveName) {
  ManualExecutor ex;
  MetricsRegistry registry;
  PipelineOptions opt;
  opt.registry = &registry;
  auto build = [&] {
    Pipeline p("same", opt);
    auto src = p.emplace<CountSource>(-1);
    auto sink = p.emplace<CollectSink>();
    p.connect(src, sink);
    return std::move(p).run(ex);
  };
  RunHandle first = build();
  ex.run(10);
  RunHandle second = build();
  auto r = second.wait();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::invalid_argument);
  EXPECT_EQ(r.error().message, "pipeline 'same': a running pipeline is already named 'same'");
  first.cancel();
  EXPECT_EQ(first.wait().error().code, errc::cancelled);
  first = RunHandle();
  EXPECT_TRUE(registry.snapshot().stages.empty());
  RunHandle third = build();  // the name is free again
  ex.run(10);
  EXPECT_FALSE(third.done());
  third.cancel();
  EXPECT_EQ(third.wait().error().code, errc::cancelled);
}

}  // namespace
}  // namespace ilre::engine
