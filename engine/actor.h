// The actor runtime behind Pipeline (internal: stages never see this header's types).
//
// An actor owns one stage and drives it on a shared Executor. Scheduling is a small state machine in one
// atomic: notify() (input arrived, a slot freed, bytes released, cancel) posts run() only when the actor
// is idle, and only marks it when it is running, so an actor never runs on two threads and a notification
// that arrives while it is deciding to sleep makes it look again instead of being lost. run() calls the
// stage while it has input and room for output, at most `quota` calls per turn, then yields (re-posts
// itself) or suspends; it resumes only through notify(). No thread ever blocks on a mailbox.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine/cancel.h"
#include "engine/executor.h"
#include "engine/mailbox.h"
#include "engine/metrics.h"
#include "engine/pipeline_options.h"
#include "engine/stage.h"
#include "ilre/error.h"

namespace ilre::engine::detail {

class ActorBase;

// A typed mailbox owned by the pipeline, with the type-independent operations the core needs.
class EdgeBase {
 public:
  EdgeBase(size_t producer, size_t consumer) : producer(producer), consumer(consumer) {}
  virtual ~EdgeBase() = default;
  virtual void abort(const Error& error) = 0;
  virtual void wire(ActorBase* producer, ActorBase* consumer, QueueGauge* gauge) = 0;
  const size_t producer;  // actor indices
  const size_t consumer;
};

template <class T>
class Edge final : public EdgeBase {
 public:
  Edge(size_t capacity, size_t producer, size_t consumer) : EdgeBase(producer, consumer), mailbox(capacity) {}
  void abort(const Error& error) override { mailbox.abort(error); }
  void wire(ActorBase* producer, ActorBase* consumer, QueueGauge* gauge) override;
  Mailbox<T> mailbox;
};

// Shared state of one running pipeline, owned by the RunHandle. Actor tasks refer to it by plain pointer:
// the run completes (and wait() returns) only once every actor has finished *and* no actor task is queued
// or running, so the handle's owner destroys the stages, deterministically, on its own thread. Timers and
// memory-budget wakers, which may fire after that, hold weak references.
class PipelineCore : public std::enable_shared_from_this<PipelineCore> {
 public:
  PipelineCore(std::string name, PipelineOptions options, Executor& executor);
  ~PipelineCore();

  // Validates, wires and starts every actor; with `build_errors` (or invalid options) the run completes
  // at once with errc::invalid_argument and no stage is called.
  void start(std::vector<std::string> build_errors);

  bool stopping() const { return cancel_.cancelled(); }
  // First failure or cancel wins: cancels the token, aborts every mailbox, wakes every actor.
  void fail(Error error);
  void post_run(ActorBase* actor);
  void actor_finished(bool normal);
  // The end of every actor task; the last one after the last actor finished completes the run.
  void task_done();
  // Notifies actor `index` if the pipeline still exists (for wakers that may outlive it).
  std::function<void()> waker_for(size_t index);

  bool done() const;
  Result<void> wait();
  std::optional<Result<void>> wait_for(std::chrono::nanoseconds timeout);
  MetricsSnapshot snapshot() const;
  CancelToken token() const { return cancel_.token(); }
  // The registry listing, for the RunHandle to hold (see MetricsRegistry::Registration).
  std::shared_ptr<void> take_listing() { return std::move(listing_); }

  const std::string name;
  const PipelineOptions options;
  Executor& executor;
  // Destruction order matters: actors (stages) first, then mailboxes, then the metrics their gauges use.
  std::shared_ptr<PipelineMetrics> metrics;
  std::vector<std::unique_ptr<EdgeBase>> edges;
  std::vector<std::unique_ptr<ActorBase>> actors;

 private:
  void complete(Result<void> result);

  CancelSource cancel_;
  std::shared_ptr<void> listing_;
  std::atomic<size_t> live_{0};   // actors not finished
  std::atomic<size_t> tasks_{0};  // actor tasks posted and not yet returned
  std::atomic<bool> abnormal_{false};
  std::atomic<bool> completed_{false};
  Executor::TimerId deadline_timer_ = 0;
  uint64_t parent_callback_ = 0;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  bool done_ = false;
  Result<void> result_;
};

class ActorBase {
 public:
  explicit ActorBase(std::string name) : name_(std::move(name)) {}
  virtual ~ActorBase() = default;
  ActorBase(const ActorBase&) = delete;
  ActorBase& operator=(const ActorBase&) = delete;

  const std::string& name() const { return name_; }
  virtual const void* stage_address() const = 0;
  virtual bool needs_input() const = 0;
  virtual bool needs_output() const = 0;
  virtual bool input_connected() const = 0;
  virtual bool output_connected() const = 0;

  // Before the first notify(): where the actor belongs and what it counts into.
  void attach(PipelineCore* core, size_t index, StageCounters* counters);

  // Thread-safe; any number of calls, from anywhere, at any time.
  void notify();
  // The executor task.
  void run();

 protected:
  enum class Step {
    yield,    // quota used up with work left: re-post
    suspend,  // waiting for input, output room or budget: sleep until notify()
    done,     // end of stream handled, output closed
    stop,     // cancelled, failed or aborted
  };
  virtual void on_attach() = 0;
  virtual Step drive(int quota) = 0;
  // Drops pending and in-hand messages and detaches from both mailboxes.
  virtual void shutdown() = 0;

  // Reports a stage error (prefixed with the stage name) unless the pipeline is already stopping.
  Step fail(Error error);
  void begin_stall();
  static int64_t now_ns();

  // Calls into the stage: counts busy time, turns exceptions into errors.
  template <class Fn>
  auto call(Fn&& fn) -> decltype(fn()) {
    int64_t t0 = now_ns();
    auto r = catch_to_result(std::forward<Fn>(fn));
    counters_->busy_ns.fetch_add(static_cast<uint64_t>(now_ns() - t0), std::memory_order_relaxed);
    if (!r) return tl::unexpected<Error>(std::move(r.error()));
    return std::move(*r);
  }

  std::string name_;
  PipelineCore* core_ = nullptr;
  size_t index_ = 0;
  StageCounters* counters_ = nullptr;

 private:
  enum : uint8_t { kIdle, kScheduled, kRunning, kNotified, kDead };
  void end_stall();
  void finish(bool normal);

  std::atomic<uint8_t> sched_{kIdle};
  int64_t stall_since_ns_ = 0;  // only touched by the running actor
  bool logged_start_ = false;
};

template <class T>
void Edge<T>::wire(ActorBase* producer_actor, ActorBase* consumer_actor, QueueGauge* gauge) {
  mailbox.set_gauge(gauge);
  mailbox.set_wakers([consumer_actor] { consumer_actor->notify(); }, [producer_actor] { producer_actor->notify(); });
}

struct None {};  // stands for the missing In of a source or Out of a sink

template <class S>
struct in_of {
  using type = None;
};
template <HasIn S>
struct in_of<S> {
  using type = typename S::In;
};
template <class S>
struct out_of {
  using type = None;
};
template <HasOut S>
struct out_of<S> {
  using type = typename S::Out;
};

template <class S>
class Actor final : public ActorBase {
 public:
  using In = typename in_of<S>::type;
  using Out = typename out_of<S>::type;
  static constexpr bool kSource = SourceStage<S>;
  static constexpr bool kTransform = TransformStage<S>;
  static constexpr bool kSink = SinkStage<S>;
  static constexpr bool kHasIn = !kSource;
  static constexpr bool kHasOut = !kSink;
  static constexpr bool kHasStart = requires(S& s, StageContext& c) {
    { s.start(c) } -> std::same_as<Result<void>>;
  };
  static constexpr bool kHasProduce = requires(S& s, Emitter<Out>& out) {
    { s.produce(out) } -> std::same_as<Result<bool>>;
  };
  static constexpr bool kHasFinishOut = requires(S& s, Emitter<Out>& out) {
    { s.finish(out) } -> std::same_as<Result<void>>;
  };
  static constexpr bool kHasFinishSink = requires(S& s) {
    { s.finish() } -> std::same_as<Result<void>>;
  };
  static_assert(kSource || kTransform || kSink, "not a stage: see engine/stage.h for the contract");

  Actor(std::unique_ptr<S> stage, std::string name) : ActorBase(std::move(name)), stage_(std::move(stage)) {
    more_ = kSource;  // a source always has more until produce() says otherwise
  }

  S& stage() { return *stage_; }
  const void* stage_address() const override { return stage_.get(); }
  bool needs_input() const override { return kHasIn; }
  bool needs_output() const override { return kHasOut; }
  bool input_connected() const override { return in_ != nullptr; }
  bool output_connected() const override { return out_ != nullptr; }
  void set_input(Mailbox<In>* in) { in_ = in; }
  void set_output(Mailbox<Out>* out) { out_ = out; }

 protected:
  void on_attach() override {
    ctx_.emplace(core_->name, name_, core_->token(), counters_);
    if constexpr (kHasOut) {
      emitter_.emplace(*out_, core_->options.pending_capacity, counters_, core_->options.budget,
                       core_->waker_for(index_));
    }
  }

  Step drive(int quota) override {
    if (!started_) {
      started_ = true;
      if constexpr (kHasStart) {
        auto r = call([&] { return stage_->start(*ctx_); });
        if (!r) return fail(std::move(r.error()));
      }
    }
    int steps = 0;
    for (;;) {
      if (core_->stopping()) return Step::stop;
      if constexpr (kHasOut) {
        if (!emitter_->flush()) {
          if (out_->aborted()) return Step::stop;
          if (out_->await_room()) continue;
          begin_stall();
          return Step::suspend;
        }
        if (auto e = emitter_->take_error()) return fail(std::move(*e));
      }
      if (finished_) {
        if constexpr (kHasOut) out_->close();
        return Step::done;
      }
      if (steps >= quota) return Step::yield;
      if constexpr (kHasOut) {
        // Take work only with room for at least one result: pending is for surplus, not a second queue.
        if (out_->full()) {
          if (out_->aborted()) return Step::stop;
          if (out_->await_room()) continue;
          begin_stall();
          return Step::suspend;
        }
      }
      if (more_) {
        if constexpr (kHasProduce) {
          auto r = call([&] { return stage_->produce(*emitter_); });
          ++steps;
          if (!r) return fail(std::move(r.error()));
          more_ = *r;
          if (kSource && !more_) eof_ = true;
          if (auto s = after_step()) return *s;
        }
        continue;
      }
      if (eof_) {
        if (!finish_called_) {
          finish_called_ = true;
          ++steps;
          if constexpr (kHasOut && kHasFinishOut) {
            auto r = call([&] { return stage_->finish(*emitter_); });
            if (!r) return fail(std::move(r.error()));
          } else if constexpr (kSink && kHasFinishSink) {
            auto r = call([&] { return stage_->finish(); });
            if (!r) return fail(std::move(r.error()));
          }
          more_ = kTransform && kHasProduce;
          if (auto s = after_step()) return *s;
          continue;
        }
        finished_ = true;
        continue;
      }
      if constexpr (kHasIn) {
        switch (in_->try_pop(msg_)) {
          case MailboxStatus::ok: {
            counters_->messages_in.fetch_add(1, std::memory_order_relaxed);
            Result<void> r;
            if constexpr (kSink) {
              r = call([&] { return stage_->process(std::move(*msg_)); });
            } else {
              r = call([&] { return stage_->process(std::move(*msg_), *emitter_); });
            }
            msg_.reset();  // the input dies here, not when the next one arrives
            ++steps;
            if (!r) return fail(std::move(r.error()));
            more_ = kHasProduce;
            if (auto s = after_step()) return *s;
            continue;
          }
          case MailboxStatus::empty:
            if (in_->await_data()) continue;
            return Step::suspend;
          case MailboxStatus::closed:
            eof_ = true;
            continue;
          default:
            return Step::stop;  // aborted: the pipeline is stopping
        }
      }
    }
  }

  void shutdown() override {
    msg_.reset();
    if constexpr (kHasOut) {
      if (emitter_) emitter_->clear();
      if (out_) out_->detach_producer();
    }
    if constexpr (kHasIn) {
      if (in_) in_->detach_consumer();
    }
  }

 private:
  // After a stage call: a failed try_reserve() suspends the actor until the budget has bytes again; the
  // stage must then have more to do (produce() returned true), or the work would be lost.
  std::optional<Step> after_step() {
    if constexpr (kHasOut) {
      if (emitter_->take_budget_blocked()) {
        if (auto e = emitter_->take_error()) return fail(std::move(*e));
        if (kSource && eof_) return std::nullopt;
        if (!more_) {
          return fail(Error{errc::internal,
                            "memory budget exhausted in a step without produce() to retry it; reserve in produce()"});
        }
        begin_stall();
        return Step::suspend;
      }
    }
    return std::nullopt;
  }

  std::unique_ptr<S> stage_;
  Mailbox<In>* in_ = nullptr;
  Mailbox<Out>* out_ = nullptr;
  std::optional<StageContext> ctx_;
  std::optional<Emitter<Out>> emitter_;
  std::optional<In> msg_;  // the input being processed
  bool started_ = false;
  bool more_ = false;           // call produce() before taking more input
  bool eof_ = false;            // input closed and drained (source: produce() returned false)
  bool finish_called_ = false;  // finish() has run
  bool finished_ = false;       // nothing left: close the output
};

}  // namespace ilre::engine::detail
