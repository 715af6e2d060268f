// The deterministic scheduler, and many pipelines sharing one thread pool.
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/pipeline.h"
#include "test_stages.h"

namespace ilre::engine {
namespace {

using namespace std::chrono_literals;
using test::AddStage;
using test::CollectSink;
using test::CountSource;

std::vector<std::string> traced_run(int quota) {
  std::vector<std::string> trace;
  ManualExecutor ex;
  PipelineOptions opt;
  opt.mailbox_capacity = 2;
  opt.quota = quota;
  Pipeline p("trace", opt);
  auto src = p.emplace<CountSource>(6, nullptr, &trace);
  auto mid = p.emplace<AddStage>();
  mid->trace = &trace;
  auto sink = p.emplace<CollectSink>();
  sink->trace = &trace;
  p.connect(src, mid);
  p.connect(mid, sink);
  RunHandle run = std::move(p).run(ex);
  ex.run_until_idle();
  EXPECT_TRUE(run.done());
  EXPECT_TRUE(run.wait());
  return trace;
}

TEST(ManualExecutor, IdenticalTracesAcrossRuns) {
  auto a = traced_run(16);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(traced_run(16), a);
  ASSERT_EQ(a.size(), 6u * 3 + 1);
  // The exact interleaving is the contract of FIFO scheduling with capacity-2 mailboxes: the three actors
  // start in the order added; src fills its mailbox (2) and suspends; mid takes both (waking src) and
  // fills its own output; sink, already queued, drains it (waking mid); then src, then mid, in wake order.
  std::vector<std::string> expected = {"src 0",  "src 1",  "mid 0",  "mid 1",  "sink 0", "sink 1", "src 2",
                                       "src 3",  "mid 2",  "mid 3",  "src 4",  "src 5",  "sink 2", "sink 3",
                                       "mid 4",  "mid 5",  "sink 4", "sink 5", "sink finish"};
  EXPECT_EQ(a, expected);
}

TEST(ManualExecutor, QuotaChangesTheInterleavingDeterministically) {
  auto a = traced_run(1);
  EXPECT_EQ(traced_run(1), a);
  EXPECT_NE(a, traced_run(16));
}

TEST(ManualExecutor, FifoOrderAndVirtualTimers) {
  ManualExecutor ex;
  std::vector<int> order;
  ex.post([&] {
    order.push_back(1);
    ex.post([&] { order.push_back(3); });
  });
  ex.post([&] { order.push_back(2); });
  auto t1 = ex.post_after(2s, [&] { order.push_back(20); });
  ex.post_after(1s, [&] { order.push_back(10); });
  auto t3 = ex.post_after(1s, [&] { order.push_back(11); });
  EXPECT_EQ(ex.run_until_idle(), 3u);
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
  ex.cancel_timer(t3);
  ex.advance(1500ms);
  ex.run_until_idle();
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3, 10}));
  ex.advance(1s);
  ex.run_until_idle();
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3, 10, 20}));
  ex.cancel_timer(t1);  // already fired: ignored
}

TEST(ThreadPoolExecutor, TimersFireInOrderAndCanBeCancelled) {
  ThreadPoolExecutor pool(2);
  std::mutex m;
  std::vector<int> fired;
  auto add = [&](int v) {
    std::lock_guard l(m);
    fired.push_back(v);
  };
  pool.post_after(40ms, [&] { add(2); });
  pool.post_after(10ms, [&] { add(1); });
  auto cancelled = pool.post_after(20ms, [&] { add(99); });
  pool.cancel_timer(cancelled);
  pool.post_after(1h, [&] { add(100); });  // must not hold up destruction
  std::this_thread::sleep_for(200ms);
  std::lock_guard l(m);
  EXPECT_EQ(fired, (std::vector<int>{1, 2}));
}

TEST(ManyPipelines, FiftyShareOneTwoThreadPool) {
  constexpr int kPipelines = 50;
  constexpr int64_t kCount = 2000;
  ThreadPoolExecutor pool(2);
  MetricsRegistry registry;
  MemoryBudget budget(1 << 20);
  std::vector<RunHandle> runs;
  std::vector<StageHandle<CollectSink>> sinks;
  for (int i = 0; i < kPipelines; ++i) {
    PipelineOptions opt;
    opt.mailbox_capacity = 4;
    opt.registry = &registry;
    opt.budget = &budget;
    Pipeline p("p" + std::to_string(i), opt);
    auto src = p.emplace<CountSource>(kCount);
    auto mid = p.emplace<AddStage>();
    auto sink = p.emplace<CollectSink>();
    p.connect(src, mid);
    p.connect(mid, sink);
    sinks.push_back(sink);
    runs.push_back(std::move(p).run(pool));
  }
  EXPECT_EQ(registry.snapshot().stages.size(), size_t(3 * kPipelines));
  for (int i = 0; i < kPipelines; ++i) {
    auto r = runs[i].wait_for(8s);
    ASSERT_TRUE(r.has_value()) << "pipeline " << i << " did not finish";
    ASSERT_TRUE(*r) << r->error().message;
    EXPECT_EQ(sinks[i]->received, kCount);
    EXPECT_TRUE(sinks[i]->in_order);
  }
  auto snap = registry.snapshot();
  for (int i = 0; i < kPipelines; ++i) {
    EXPECT_EQ(snap.find("p" + std::to_string(i), "sink")->messages_in, uint64_t(kCount));
  }
  runs.clear();
  EXPECT_TRUE(registry.snapshot().stages.empty());  // series leave with their pipelines
}

TEST(ManyPipelines, AFailingPipelineDoesNotDisturbItsNeighbours) {
  ThreadPoolExecutor pool(2);
  std::vector<RunHandle> runs;
  for (int i = 0; i < 10; ++i) {
    Pipeline p("n" + std::to_string(i));
    auto src = p.emplace<CountSource>(5000);
    auto mid = p.emplace<AddStage>();
    if (i % 3 == 0) mid->fail_at = 1000;
    auto sink = p.emplace<CollectSink>();
    p.connect(src, mid);
    p.connect(mid, sink);
    runs.push_back(std::move(p).run(pool));
  }
  for (int i = 0; i < 10; ++i) {
    auto r = runs[i].wait_for(8s);
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(bool(*r), i % 3 != 0) << i;
  }
}

}  // namespace
}  // namespace ilre::engine
