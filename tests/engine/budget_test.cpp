#include "engine/memory_budget.h"

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
using test::CollectSink;
using test::Counted;
using test::Liveness;

TEST(MemoryBudget, ReserveReleaseAndWake) {
  MemoryBudget budget(100);
  auto a = budget.try_acquire(60);
  ASSERT_TRUE(a);
  EXPECT_EQ(budget.used(), 60u);
  int woken = 0;
  EXPECT_FALSE(budget.try_acquire(50, [&] { ++woken; }));
  EXPECT_EQ(budget.waiters(), 1u);
  {
    Reservation moved = std::move(*a);
    EXPECT_EQ(a->bytes(), 0u);
    EXPECT_EQ(budget.used(), 60u);
  }  // released here
  EXPECT_EQ(woken, 1);
  EXPECT_EQ(budget.used(), 0u);
  EXPECT_EQ(budget.waiters(), 0u);
  auto b = budget.try_acquire(100);
  ASSERT_TRUE(b);
  EXPECT_FALSE(budget.try_acquire(1));
  b->reset();
  EXPECT_EQ(budget.used(), 0u);
  EXPECT_EQ(budget.high_water(), 100u);
  EXPECT_FALSE(budget.try_acquire(101));  // never fits
}

// Reserves `bytes` per message in produce(), as a KV-producing stage would.
struct BudgetSource {
  using Out = Counted;
  static constexpr std::string_view kName = "kv";
  Result<bool> produce(Emitter<Out>& out) {
    if (next >= count) return false;
    auto r = out.try_reserve(bytes);
    if (!r) return true;  // suspended until bytes come back; called again then
    out.emit(Counted(next++, live, std::move(*r)));
    return next < count;
  }
  int64_t count;
  size_t bytes;
  Liveness* live = nullptr;
  int64_t next = 0;
};

TEST(MemoryBudget, LimitsBytesInFlightAcrossPipelines) {
  ThreadPoolExecutor pool(2);
  MemoryBudget budget(4096);
  Liveness live;
  std::vector<RunHandle> runs;
  std::vector<StageHandle<CollectSink>> sinks;
  for (int i = 0; i < 3; ++i) {
    PipelineOptions opt;
    opt.mailbox_capacity = 64;  // the budget, not the mailbox, is the limit here
    opt.budget = &budget;
    Pipeline p("b" + std::to_string(i), opt);
    auto src = p.add(std::make_unique<BudgetSource>(BudgetSource{200, 1024, &live}));
    auto sink = p.emplace<CollectSink>();
    sink->delay = 20us;
    p.connect(src, sink);
    sinks.push_back(sink);
    runs.push_back(std::move(p).run(pool));
  }
  for (int i = 0; i < 3; ++i) {
    auto r = runs[i].wait_for(8s);
    ASSERT_TRUE(r.has_value());
    ASSERT_TRUE(*r) << r->error().message;
    EXPECT_EQ(sinks[i]->received, 200);
    EXPECT_TRUE(sinks[i]->in_order);
  }
  EXPECT_LE(budget.high_water(), 4096u);
  EXPECT_EQ(budget.high_water(), 4096u);  // and it was reached: the budget did the limiting
  // 4 reservations of 1 KiB exist at most; a message is counted alive only while it holds one.
  EXPECT_LE(live.max_alive.load(), 4);
  EXPECT_EQ(budget.used(), 0u);
  EXPECT_EQ(live.alive.load(), 0);
}

TEST(MemoryBudget, DeterministicOnTheManualExecutor) {
  ManualExecutor ex;
  MemoryBudget budget(3000);
  PipelineOptions opt;
  opt.mailbox_capacity = 16;
  opt.budget = &budget;
  Pipeline p("m", opt);
  auto src = p.add(std::make_unique<BudgetSource>(BudgetSource{50, 1000}));
  auto sink = p.emplace<CollectSink>();
  p.connect(src, sink);
  RunHandle run = std::move(p).run(ex);
  ex.run_until_idle();
  ASSERT_TRUE(run.done());
  EXPECT_TRUE(run.wait());
  EXPECT_EQ(sink->received, 50);
  auto m = run.metrics();
  EXPECT_LE(m.find("m", "sink")->queue_high_water, 3u);
}

TEST(MemoryBudget, AMessageLargerThanTheBudgetFailsTheStage) {
  ManualExecutor ex;
  MemoryBudget budget(100);
  PipelineOptions opt;
  opt.budget = &budget;
  Pipeline p("huge", opt);
  auto src = p.add(std::make_unique<BudgetSource>(BudgetSource{5, 1000}));
  auto sink = p.emplace<CollectSink>();
  p.connect(src, sink);
  auto r = std::move(p).run(ex).wait();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::out_of_range);
  EXPECT_EQ(r.error().message, "stage 'kv': message of 1000 bytes exceeds the whole memory budget of 100 bytes");
}

TEST(MemoryBudget, CancelWhileWaitingForBytes) {
  ThreadPoolExecutor pool(2);
  MemoryBudget budget(1000);
  auto hog = budget.try_acquire(1000);  // held by "another pipeline"
  PipelineOptions opt;
  opt.budget = &budget;
  Pipeline p("starved", opt);
  auto src = p.add(std::make_unique<BudgetSource>(BudgetSource{5, 10}));
  auto sink = p.emplace<CollectSink>();
  p.connect(src, sink);
  RunHandle run = std::move(p).run(pool);
  EXPECT_FALSE(run.wait_for(30ms).has_value());  // suspended, not spinning, not done
  run.cancel();
  auto r = run.wait_for(5s);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->error().code, errc::cancelled);
  hog->reset();  // wakes a waker of a finished pipeline: harmless
}

}  // namespace
}  // namespace ilre::engine
