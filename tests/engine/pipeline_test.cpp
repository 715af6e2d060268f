#include "engine/pipeline.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "test_stages.h"

namespace ilre::engine {
namespace {

using namespace std::chrono_literals;
using test::AddStage;
using test::CollectSink;
using test::Counted;
using test::CountSource;
using test::Liveness;

// Every pipeline test runs on both executors: the deterministic one and a real 2-thread pool.
enum class Exec { manual, pool };

class OnBothExecutors : public ::testing::TestWithParam<Exec> {
 protected:
  OnBothExecutors() {
    if (GetParam() == Exec::manual) {
      executor_ = std::make_unique<ManualExecutor>();
    } else {
      executor_ = std::make_unique<ThreadPoolExecutor>(2);
    }
  }
  Executor& executor() { return *executor_; }
  std::unique_ptr<Executor> executor_;
};

INSTANTIATE_TEST_SUITE_P(Engine, OnBothExecutors, ::testing::Values(Exec::manual, Exec::pool),
                         [](const auto& info) { return info.param == Exec::manual ? "manual" : "pool"; });

struct Chain {
  StageHandle<CountSource> src;
  StageHandle<AddStage> mid;
  StageHandle<CollectSink> sink;
};

Chain make_chain(Pipeline& p, int64_t count, Liveness* live = nullptr, size_t capacity = 0) {
  Chain c{p.emplace<CountSource>(count, live), p.emplace<AddStage>(), p.emplace<CollectSink>()};
  c.mid->live = live;
  p.connect(c.src, c.mid, capacity);
  p.connect(c.mid, c.sink, capacity);
  return c;
}

TEST_P(OnBothExecutors, ThreeStagesPass100kMessagesInOrder) {
  constexpr int64_t kCount = 100000;
  Liveness live;
  Pipeline p("order");
  Chain c = make_chain(p, kCount, &live);
  RunHandle run = std::move(p).run(executor());
  auto r = run.wait_for(8s);
  ASSERT_TRUE(r.has_value()) << "pipeline did not finish";
  ASSERT_TRUE(*r) << r->error().message;
  EXPECT_EQ(c.sink->received, kCount);
  EXPECT_TRUE(c.sink->in_order);
  EXPECT_TRUE(c.sink->finished);
  EXPECT_EQ(c.sink->sum, kCount * (kCount - 1) / 2);
  EXPECT_EQ(live.alive.load(), 0);
  MetricsSnapshot m = run.metrics();
  ASSERT_EQ(m.stages.size(), 3u);
  EXPECT_EQ(m.find("order", "src")->messages_out, uint64_t(kCount));
  EXPECT_EQ(m.find("order", "mid")->messages_in, uint64_t(kCount));
  EXPECT_EQ(m.find("order", "mid")->messages_out, uint64_t(kCount));
  EXPECT_EQ(m.find("order", "mid")->items_out, uint64_t(2 * kCount));
  EXPECT_EQ(m.find("order", "sink")->messages_in, uint64_t(kCount));
  EXPECT_EQ(m.find("order", "sink")->queue_depth, 0u);
  EXPECT_LE(m.find("order", "sink")->queue_high_water, PipelineOptions{}.mailbox_capacity);
}

// A fast producer and a slow consumer: what is in flight never exceeds the mailboxes plus the bounded
// pending buffers plus one message in each stage's hands.
TEST_P(OnBothExecutors, BackpressureBoundsMessagesInFlight) {
  Liveness live;
  PipelineOptions opt;
  opt.mailbox_capacity = 2;
  opt.pending_capacity = 1;
  Pipeline p("bp", opt);
  Chain c = make_chain(p, 300, &live);
  c.sink->delay = 20us;
  RunHandle run = std::move(p).run(executor());
  auto r = run.wait_for(8s);
  ASSERT_TRUE(r && *r);
  EXPECT_EQ(c.sink->received, 300);
  MetricsSnapshot m = run.metrics();
  EXPECT_LE(m.find("bp", "mid")->queue_high_water, 2u);
  EXPECT_LE(m.find("bp", "sink")->queue_high_water, 2u);
  EXPECT_EQ(m.find("bp", "sink")->queue_high_water, 2u);  // the slow sink really did fill its mailbox
  // 2 edges x (capacity + pending) + one being built by src, one held by mid, one held by sink.
  EXPECT_LE(live.max_alive.load(), 2 * (2 + 1) + 3);
  EXPECT_EQ(live.alive.load(), 0);
  if (GetParam() == Exec::pool) {
    EXPECT_GT(m.find("bp", "src")->stall_ns, 0u);
  }
}

// A stage that emits several messages per input uses the pending buffer, still bounded.
struct Triple {
  using In = Counted;
  using Out = Counted;
  static constexpr std::string_view kName = "triple";
  Result<void> process(In&& msg, Emitter<Out>& out) {
    for (int k = 0; k < 3; ++k) out.emit(Counted(msg.seq * 3 + k, live));
    return {};
  }
  Liveness* live;
};

TEST_P(OnBothExecutors, SurplusOutputWaitsInTheBoundedPendingBuffer) {
  Liveness live;
  PipelineOptions opt;
  opt.mailbox_capacity = 2;
  opt.pending_capacity = 2;
  Pipeline p("surplus", opt);
  auto src = p.emplace<CountSource>(300, &live);
  auto tri = p.emplace<Triple>(&live);
  auto sink = p.emplace<CollectSink>();
  sink->delay = 20us;
  p.connect(src, tri);
  p.connect(tri, sink);
  RunHandle run = std::move(p).run(executor());
  auto r = run.wait_for(8s);
  ASSERT_TRUE(r && *r);
  EXPECT_EQ(sink->received, 900);
  EXPECT_TRUE(sink->in_order);
  // edge 1: 2 queued; edge 2: 2 queued + 2 pending; src building 1, triple holding 1 input, sink 1.
  EXPECT_LE(live.max_alive.load(), 2 + (2 + 2) + 3);
  EXPECT_EQ(live.alive.load(), 0);
}

TEST_P(OnBothExecutors, EmittingBeyondThePendingBoundIsAnError) {
  struct Flood {
    using In = Counted;
    using Out = Counted;
    std::string name() const { return "flood"; }
    Result<void> process(In&& msg, Emitter<Out>& out) {
      for (int k = 0; k < 100; ++k) out.emit(Counted(msg.seq, nullptr));
      return {};
    }
  };
  PipelineOptions opt;
  opt.mailbox_capacity = 2;
  opt.pending_capacity = 4;
  Pipeline p("flood", opt);
  auto src = p.emplace<CountSource>(10);
  auto flood = p.emplace<Flood>();
  auto sink = p.emplace<CollectSink>();
  p.connect(src, flood);
  p.connect(flood, sink);
  RunHandle run = std::move(p).run(executor());
  auto r = run.wait_for(8s);
  ASSERT_TRUE(r.has_value());
  ASSERT_FALSE(*r);
  EXPECT_EQ(r->error().code, errc::internal);
  EXPECT_EQ(r->error().message.rfind("stage 'flood': emitted more than 4 messages", 0), 0u) << r->error().message;
}

// A tokenizer-like stage: one input becomes many outputs, handed out one per produce() step.
struct Splitter {
  using In = Counted;
  using Out = Counted;
  static constexpr std::string_view kName = "split";
  Result<void> process(In&& msg, Emitter<Out>&) {
    base = msg.seq * 1000;
    left = 1000;
    return {};
  }
  Result<bool> produce(Emitter<Out>& out) {
    if (left == 0) return false;
    out.emit(Counted(base + (1000 - left), live));
    --left;
    return left > 0;
  }
  Result<void> finish(Emitter<Out>& out) {
    out.emit(Counted(5000, live));  // trailer after the last input
    return {};
  }
  int64_t base = 0;
  int64_t left = 0;
  Liveness* live = nullptr;
};

TEST_P(OnBothExecutors, ProduceStepsSpreadOneInputOverManyOutputs) {
  Liveness live;
  PipelineOptions opt;
  opt.mailbox_capacity = 2;
  opt.pending_capacity = 1;
  Pipeline p("split", opt);
  auto src = p.emplace<CountSource>(5, &live);
  auto split = p.emplace<Splitter>();
  split->live = &live;
  auto sink = p.emplace<CollectSink>();
  p.connect(src, split);
  p.connect(split, sink);
  RunHandle run = std::move(p).run(executor());
  auto r = run.wait_for(8s);
  ASSERT_TRUE(r && *r) << r->error().message;
  EXPECT_EQ(sink->received, 5001);
  EXPECT_TRUE(sink->in_order);
  EXPECT_LE(live.max_alive.load(), 2 + 2 + 1 + 3);
  EXPECT_EQ(live.alive.load(), 0);
}

TEST_P(OnBothExecutors, ErrorInTheMiddleStageSurfacesWithItsNameAndStopsTheSource) {
  Liveness live;
  PipelineOptions opt;
  opt.mailbox_capacity = 4;
  Pipeline p("err", opt);
  Chain c = make_chain(p, -1, &live);  // endless source
  c.mid->fail_at = 100;
  RunHandle run = std::move(p).run(executor());
  auto r = run.wait_for(8s);
  ASSERT_TRUE(r.has_value()) << "pipeline did not stop";
  ASSERT_FALSE(*r);
  EXPECT_EQ(r->error().code, errc::io_failed);
  EXPECT_EQ(r->error().message, "stage 'mid': disk on fire");
  // mid took 101 messages; backpressure let src get at most a mailbox (+ the one in hand) ahead.
  EXPECT_LE(c.src->produced.load(), 101 + 4 + 1);
  EXPECT_LE(c.sink->received, 100);  // what mid passed on before failing, less what the abort discarded
  EXPECT_TRUE(c.sink->in_order);
  EXPECT_FALSE(c.sink->finished);  // finish() is for end of stream, not for failures
  EXPECT_EQ(live.alive.load(), 0);
  EXPECT_TRUE(run.cancel_token().cancelled());
}

TEST_P(OnBothExecutors, ExceptionsBecomeStageErrors) {
  Pipeline p("throw");
  Chain c = make_chain(p, 1000);
  c.mid->throw_at = 7;
  RunHandle run = std::move(p).run(executor());
  auto r = run.wait_for(8s);
  ASSERT_TRUE(r.has_value());
  ASSERT_FALSE(*r);
  EXPECT_EQ(r->error().code, errc::internal);
  EXPECT_EQ(r->error().message, "stage 'mid': thrown at 7");
}

TEST_P(OnBothExecutors, InvalidPipelinesReportInvalidArgumentWithoutRunningStages) {
  {
    Pipeline p("unconnected");
    auto src = p.emplace<CountSource>(10);
    auto mid = p.emplace<AddStage>();
    p.emplace<CollectSink>();
    p.connect(src, mid);
    RunHandle run = std::move(p).run(executor());
    auto r = run.wait();
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, errc::invalid_argument);
    EXPECT_EQ(r.error().message, "pipeline 'unconnected': stage 'mid' has no output");
    EXPECT_EQ(src->produced.load(), 0);
  }
  {
    Pipeline p("twice");
    auto src = p.emplace<CountSource>(10);
    auto a = p.emplace<CollectSink>();
    auto b = p.add(std::make_unique<CollectSink>(), "sink2");
    p.connect(src, a);
    p.connect(src, b);
    auto r = std::move(p).run(executor()).wait();
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().message,
              "pipeline 'twice': stage 'src' output is already connected (fan-out is not supported yet)");
  }
  {
    Pipeline p("dup");
    auto src = p.emplace<CountSource>(10);
    auto a = p.add(std::make_unique<CollectSink>(), "src");
    p.connect(src, a);
    auto r = std::move(p).run(executor()).wait();
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().message, "pipeline 'dup': two stages are named 'src'");
  }
  {
    PipelineOptions opt;
    opt.mailbox_capacity = 0;
    Pipeline p("cap", opt);
    auto r = std::move(p).run(executor()).wait();
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, errc::invalid_argument);
  }
}

TEST_P(OnBothExecutors, EmptySourceStillFinishesEveryStage) {
  Pipeline p("empty");
  Chain c = make_chain(p, 0);
  RunHandle run = std::move(p).run(executor());
  auto r = run.wait_for(8s);
  ASSERT_TRUE(r && *r);
  EXPECT_TRUE(c.sink->finished);
  EXPECT_EQ(c.sink->received, 0);
}

TEST_P(OnBothExecutors, OnCompleteIsCalledOnceWithTheResult) {
  std::atomic<int> calls{0};
  std::atomic<errc> seen{errc::ok};
  PipelineOptions opt;
  opt.on_complete = [&](const Result<void>& r) {
    seen = r ? errc::ok : r.error().code;
    ++calls;
  };
  Pipeline p("cb", opt);
  Chain c = make_chain(p, 100);
  c.mid->fail_at = 3;
  RunHandle run = std::move(p).run(executor());
  auto r = run.wait_for(8s);
  ASSERT_TRUE(r.has_value());
  for (int i = 0; i < 5000 && calls.load() == 0; ++i) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(seen.load(), errc::io_failed);
}

// Stages die with the run, on the thread that drops the last handle, not later on an executor thread.
struct Mortal {
  using In = Counted;
  static constexpr std::string_view kName = "mortal";
  explicit Mortal(std::atomic<int>* deaths) : deaths(deaths) {}
  ~Mortal() { deaths->fetch_add(1); }
  Result<void> process(In&&) { return {}; }
  std::atomic<int>* deaths;
};

TEST_P(OnBothExecutors, StagesAreDestroyedWhenTheHandleIs) {
  for (int i = 0; i < 20; ++i) {
    std::atomic<int> deaths{0};
    Pipeline p("mortal");
    auto src = p.emplace<CountSource>(50);
    auto sink = p.emplace<Mortal>(&deaths);
    p.connect(src, sink);
    RunHandle run = std::move(p).run(executor());
    ASSERT_TRUE(run.wait());
    EXPECT_EQ(deaths.load(), 0);
    run = RunHandle();
    EXPECT_EQ(deaths.load(), 1);
  }
}

// The daemon's pattern: the completion callback drops the request's handle.
TEST(OnComplete, MayDestroyTheRunHandle) {
  ThreadPoolExecutor pool(2);
  std::atomic<int> deaths{0};
  std::mutex m;
  std::optional<RunHandle> holder;
  std::atomic<bool> dropped{false};
  PipelineOptions opt;
  opt.on_complete = [&](const Result<void>&) {
    std::lock_guard l(m);
    holder.reset();
    dropped = true;
  };
  Pipeline p("self-drop", opt);
  auto src = p.emplace<CountSource>(2000);
  auto sink = p.emplace<Mortal>(&deaths);
  p.connect(src, sink);
  {
    std::lock_guard l(m);
    holder.emplace(std::move(p).run(pool));
  }
  for (int i = 0; i < 5000 && !dropped.load(); ++i) std::this_thread::sleep_for(1ms);
  ASSERT_TRUE(dropped.load());
  std::lock_guard l(m);
  holder.reset();
  EXPECT_EQ(deaths.load(), 1);
}

// ---- cancellation and deadlines ----

TEST(Cancel, FromAnotherThreadStopsPromptlyAndDestroysEveryMessage) {
  Liveness live;
  ThreadPoolExecutor pool(2);
  PipelineOptions opt;
  opt.mailbox_capacity = 8;
  Pipeline p("cancel", opt);
  Chain c = make_chain(p, -1, &live);
  c.mid->work = 300us;
  RunHandle run = std::move(p).run(pool);
  std::this_thread::sleep_for(30ms);
  EXPECT_FALSE(run.done());
  EXPECT_GT(live.alive.load(), 0);
  auto t0 = std::chrono::steady_clock::now();
  std::thread canceller([&] { run.cancel(Error{errc::cancelled, "client went away"}); });
  auto r = run.wait_for(5s);
  auto elapsed = std::chrono::steady_clock::now() - t0;
  canceller.join();
  ASSERT_TRUE(r.has_value()) << "cancel did not stop the pipeline";
  ASSERT_FALSE(*r);
  EXPECT_EQ(r->error().code, errc::cancelled);
  EXPECT_EQ(r->error().message, "client went away");
  EXPECT_LT(elapsed, 1s);
  EXPECT_EQ(live.alive.load(), 0);
  EXPECT_GT(live.destroyed.load(), 0);
}

// A stage in the middle of a long call sees the cancel at its next token check.
TEST(Cancel, ReachesAStageInsideALongCall) {
  ThreadPoolExecutor pool(2);
  Pipeline p("long");
  Chain c = make_chain(p, 10);
  c.mid->work = 60s;  // would take a minute without the token
  RunHandle run = std::move(p).run(pool);
  std::this_thread::sleep_for(20ms);
  auto t0 = std::chrono::steady_clock::now();
  run.cancel();
  auto r = run.wait_for(5s);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->error().code, errc::cancelled);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
}

TEST(Cancel, ParentTokenCancelsThePipeline) {
  ThreadPoolExecutor pool(2);
  CancelSource daemon;
  PipelineOptions opt;
  opt.parent = daemon.token();
  Pipeline p("child", opt);
  make_chain(p, -1);
  RunHandle run = std::move(p).run(pool);
  std::this_thread::sleep_for(10ms);
  daemon.cancel(Error{errc::cancelled, "daemon shutting down"});
  auto r = run.wait_for(5s);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->error().message, "daemon shutting down");
}

TEST(Cancel, DestroyingARunningHandleCancelsAndWaits) {
  Liveness live;
  ThreadPoolExecutor pool(2);
  {
    Pipeline p("dropped");
    make_chain(p, -1, &live);
    RunHandle run = std::move(p).run(pool);
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_EQ(live.alive.load(), 0);
}

TEST(Cancel, TokenBasics) {
  CancelToken never;
  EXPECT_FALSE(never.cancelled());
  EXPECT_TRUE(never.check());
  CancelSource src;
  CancelToken t = src.token();
  int fired = 0;
  uint64_t id = t.on_cancel([&] { ++fired; });
  uint64_t id2 = t.on_cancel([&] { fired += 100; });
  t.remove_callback(id2);
  EXPECT_TRUE(src.cancel(Error{errc::cancelled, "first"}));
  EXPECT_FALSE(src.cancel(Error{errc::internal, "second"}));
  EXPECT_EQ(fired, 1);
  EXPECT_TRUE(t.cancelled());
  ASSERT_FALSE(t.check());
  EXPECT_EQ(t.check().error().message, "first");
  t.on_cancel([&] { fired += 10; });  // already cancelled: runs at once
  EXPECT_EQ(fired, 11);
  (void)id;
}

TEST(Deadline, RealTimeDeadlineCancelsWithCancelled) {
  Liveness live;
  ThreadPoolExecutor pool(2);
  PipelineOptions opt;
  opt.timeout = 50ms;
  Pipeline p("deadline", opt);
  Chain c = make_chain(p, -1, &live);
  c.mid->work = 200us;
  auto t0 = std::chrono::steady_clock::now();
  RunHandle run = std::move(p).run(pool);
  auto r = run.wait_for(5s);
  auto elapsed = std::chrono::steady_clock::now() - t0;
  ASSERT_TRUE(r.has_value());
  ASSERT_FALSE(*r);
  EXPECT_EQ(r->error().code, errc::cancelled);
  EXPECT_EQ(r->error().message, "deadline of 50 ms exceeded");
  EXPECT_GE(elapsed, 50ms);
  EXPECT_LT(elapsed, 2s);
  EXPECT_EQ(live.alive.load(), 0);
}

TEST(Deadline, VirtualTimeOnTheManualExecutor) {
  ManualExecutor ex;
  PipelineOptions opt;
  opt.timeout = 10s;
  Pipeline p("virtual", opt);
  Chain c = make_chain(p, -1);
  RunHandle run = std::move(p).run(ex);
  ex.run(5000);
  ex.advance(9s);
  ex.run(5000);
  EXPECT_FALSE(run.done());
  int64_t before = c.sink->received;
  EXPECT_GT(before, 0);
  ex.advance(1s);
  ex.run_until_idle();
  ASSERT_TRUE(run.done());
  auto r = run.wait();
  EXPECT_EQ(r.error().code, errc::cancelled);
  EXPECT_EQ(r.error().message, "deadline of 10000 ms exceeded");
}

TEST(Deadline, TimerIsCancelledWhenThePipelineFinishesFirst) {
  ManualExecutor ex;
  PipelineOptions opt;
  opt.timeout = 10s;
  Pipeline p("quick", opt);
  make_chain(p, 10);
  RunHandle run = std::move(p).run(ex);
  ex.run_until_idle();
  ASSERT_TRUE(run.done());
  ex.advance(1h);
  EXPECT_EQ(ex.queued(), 0u);
  EXPECT_TRUE(run.wait());
}

}  // namespace
}  // namespace ilre::engine
