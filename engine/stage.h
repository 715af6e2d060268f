// The stage contract: what a pipeline stage class looks like to the actor runtime.
//
//   struct Prefill {                                     // a transform stage
//     using In = TokenChunk;                             // messages are move-only values
//     using Out = KvBlock;
//     static constexpr std::string_view kName = "prefill";   // or: std::string name() const
//     Result<void> start(StageContext& ctx);             // optional, once before any other call
//     Result<void> process(In&& msg, Emitter<Out>& out); // required: 0..n out.emit(...)
//     Result<bool> produce(Emitter<Out>& out);           // optional: more output from the last input
//     Result<void> finish(Emitter<Out>& out);            // optional: once at end of input (flush)
//   };
//
// A source has only `Out` and a required `Result<bool> produce(Emitter<Out>&)`: one bounded step per call,
// false once exhausted; finish(Emitter&) is optional. A sink has only `In`, `Result<void> process(In&&)` and
// optionally `Result<void> finish()`.
//
// Each call is one unit of work: the actor calls the stage only when the output mailbox has a free slot,
// and between calls it checks for cancellation and yields to other actors. A step may emit more than the
// mailbox takes; the surplus waits in the emitter's small pending buffer (PipelineOptions::
// pending_capacity) and the actor takes no more work until it has drained. Emitting more than that in one
// step is an error: a stage with much output per input (a tokenizer cutting a document into chunks) keeps
// the input and hands out one piece per produce() call, which the actor keeps calling while it returns true
// and the output has room. Stages return errors instead of throwing; anything thrown is caught by the actor
// and becomes the stage's error. Stages never block on another actor and never read another stage's state.
#pragma once

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "engine/cancel.h"
#include "engine/mailbox.h"
#include "engine/memory_budget.h"
#include "engine/metrics.h"
#include "ilre/error.h"

namespace ilre::engine {

// What a stage may know about its run: names for logs, the cancel token to check between units of work
// inside a long call, and counters for stage-defined items (tokens, bytes). Valid from start() to the end
// of the run. Public so stages can be unit-tested without a pipeline.
class StageContext {
 public:
  StageContext(std::string pipeline, std::string stage, CancelToken token, StageCounters* counters = nullptr)
      : pipeline_(std::move(pipeline)), stage_(std::move(stage)), token_(std::move(token)), counters_(counters) {}

  std::string_view pipeline() const { return pipeline_; }
  std::string_view stage() const { return stage_; }
  const CancelToken& cancel_token() const { return token_; }
  Result<void> check_cancel() const { return token_.check(); }

  void add_items_in(uint64_t n) {
    if (counters_) counters_->items_in.fetch_add(n, std::memory_order_relaxed);
  }
  void add_items_out(uint64_t n) {
    if (counters_) counters_->items_out.fetch_add(n, std::memory_order_relaxed);
  }

 private:
  std::string pipeline_;
  std::string stage_;
  CancelToken token_;
  StageCounters* counters_;
};

// A stage's output port. emit() never blocks: it delivers to the mailbox or holds the message in a bounded
// pending buffer that the actor drains before giving the stage more work.
template <class Out>
class Emitter {
 public:
  // `budget_waker` is what the actor wants called when a failed try_reserve() may now succeed.
  Emitter(Mailbox<Out>& out, size_t pending_capacity, StageCounters* counters = nullptr,
          MemoryBudget* budget = nullptr, std::function<void()> budget_waker = {})
      : out_(&out),
        pending_capacity_(pending_capacity),
        counters_(counters),
        budget_(budget),
        budget_waker_(std::move(budget_waker)) {}
  Emitter(const Emitter&) = delete;
  Emitter& operator=(const Emitter&) = delete;

  // Sends `msg` downstream. Dropped (destroyed here) when the pipeline is stopping; an error of the step
  // when the pending buffer is already full (see room()).
  void emit(Out msg) {
    if (pending_.empty()) {
      switch (out_->try_push(std::move(msg))) {
        case MailboxStatus::ok:
          count_out();
          return;
        case MailboxStatus::full:
          break;
        default:
          return;  // aborted or closed: the actor stops after this step
      }
    }
    if (pending_.size() >= pending_capacity_) {
      if (!error_) {
        error_ = Error{errc::internal, "emitted more than " + std::to_string(pending_capacity_) +
                                           " messages beyond a full mailbox in one step; emit at most room() "
                                           "per call and continue in produce()"};
      }
      return;
    }
    pending_.push_back(std::move(msg));
  }

  // How many emit() calls this step can make without error (free mailbox slots + free pending slots).
  size_t room() const { return out_->free_slots() + (pending_capacity_ - pending_.size()); }

  // Reserves `bytes` of the pipeline's memory budget for a message about to be built. nullopt when the
  // budget is exhausted: the stage then returns from the step keeping its work, and returns true from
  // produce(); the actor suspends until bytes are released and calls produce() again. A stage that
  // reserves must therefore implement produce(). Without a budget this always succeeds (an empty
  // reservation). A request above the whole budget can never succeed and makes the step fail.
  std::optional<Reservation> try_reserve(size_t bytes) {
    if (!budget_) return Reservation{};
    if (bytes > budget_->limit()) {
      if (!error_) {
        error_ = Error{errc::out_of_range, "message of " + std::to_string(bytes) +
                                               " bytes exceeds the whole memory budget of " +
                                               std::to_string(budget_->limit()) + " bytes"};
      }
      return std::nullopt;
    }
    // One waker per suspension is enough; later failures in the same step would only add duplicates.
    auto r = budget_->try_acquire(bytes, budget_blocked_ ? std::function<void()>{} : budget_waker_);
    if (!r) budget_blocked_ = true;
    return r;
  }

  // ---- for the actor runtime (and stage unit tests) ----

  // Pushes pending messages into the mailbox; true when none is left. An aborted mailbox drops them.
  bool flush() {
    while (!pending_.empty()) {
      switch (out_->try_push(std::move(pending_.front()))) {
        case MailboxStatus::ok:
          count_out();
          pending_.pop_front();
          break;
        case MailboxStatus::full:
          return false;
        default:
          pending_.clear();
          return true;
      }
    }
    return true;
  }
  size_t pending() const { return pending_.size(); }
  void clear() { pending_.clear(); }
  std::optional<Error> take_error() { return std::exchange(error_, std::nullopt); }
  bool take_budget_blocked() { return std::exchange(budget_blocked_, false); }

 private:
  void count_out() {
    if (counters_) counters_->messages_out.fetch_add(1, std::memory_order_relaxed);
  }

  Mailbox<Out>* out_;
  size_t pending_capacity_;
  StageCounters* counters_;
  MemoryBudget* budget_;
  std::function<void()> budget_waker_;
  std::deque<Out> pending_;  // at most pending_capacity_ messages
  std::optional<Error> error_;
  bool budget_blocked_ = false;
};

// ---- stage concepts ----

template <class S>
concept HasIn = requires { typename S::In; };
template <class S>
concept HasOut = requires { typename S::Out; };

template <class S>
concept SourceStage = HasOut<S> && !HasIn<S> && requires(S& s, Emitter<typename S::Out>& out) {
  { s.produce(out) } -> std::same_as<Result<bool>>;
};
template <class S>
concept TransformStage = HasIn<S> && HasOut<S> &&
                         requires(S& s, typename S::In&& msg, Emitter<typename S::Out>& out) {
                           { s.process(std::move(msg), out) } -> std::same_as<Result<void>>;
                         };
template <class S>
concept SinkStage = HasIn<S> && !HasOut<S> && requires(S& s, typename S::In&& msg) {
  { s.process(std::move(msg)) } -> std::same_as<Result<void>>;
};
template <class S>
concept Stage = SourceStage<S> || TransformStage<S> || SinkStage<S>;

// The stage's default name: S::kName or s.name().
template <class S>
std::string default_stage_name(const S& s) {
  if constexpr (requires { S::kName; }) {
    return std::string(S::kName);
  } else if constexpr (requires { s.name(); }) {
    return std::string(s.name());
  } else {
    static_assert(sizeof(S) == 0, "a stage needs `static constexpr std::string_view kName` or name()");
    return {};
  }
}

}  // namespace ilre::engine
