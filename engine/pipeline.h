// Pipeline: stages joined by bounded mailboxes, run as actors on a shared executor.
//
//   Pipeline p("doc-42", options);
//   auto tok = p.emplace<Tokenize>(vocab);          // StageHandle<Tokenize>
//   auto pre = p.emplace<Prefill>(model, l_r);
//   auto out = p.emplace<Collect>();
//   p.connect(tok, pre);                            // Tokenize::Out must be Prefill::In (compile-time)
//   p.connect(pre, out, /*capacity=*/2);
//   RunHandle run = std::move(p).run(executor);
//   Result<void> r = run.wait();                    // "stage 'prefill': <message>" with the stage's errc
//
// Each stage has at most one input and one output for now; the graph is stored as edges between actor
// indices, so fan-out/fan-in means actors with several ports, not a different pipeline.
// Many pipelines share one Executor, one MemoryBudget and one MetricsRegistry (the daemon's case).
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "engine/actor.h"
#include "engine/cancel.h"
#include "engine/executor.h"
#include "engine/metrics.h"
#include "engine/pipeline_options.h"
#include "engine/stage.h"
#include "ilre/error.h"

namespace ilre::engine {

// Refers to a stage added to a pipeline. stage() stays valid until the RunHandle (or, before run(), the
// Pipeline) is destroyed; touch it only before run() or after wait() returned.
template <class S>
class StageHandle {
 public:
  S& stage() const { return *stage_; }
  S* operator->() const { return stage_; }
  size_t index() const { return index_; }

 private:
  friend class Pipeline;
  StageHandle(size_t index, S* stage) : index_(index), stage_(stage) {}
  size_t index_;
  S* stage_;
};

// Owns a started run. Destroying a handle whose run is not done cancels it and waits for it (so stages
// never outlive what they reference); destroy handles before their executor.
class RunHandle {
 public:
  RunHandle() = default;
  RunHandle(RunHandle&&) noexcept = default;
  RunHandle& operator=(RunHandle&& other) noexcept;
  ~RunHandle();

  // Blocks until every actor has finished and every queued message is destroyed. The first error wins:
  // a stage's error as "stage '<name>': <message>" with its errc, a cancel's or deadline's as given.
  // On a single-threaded executor (ManualExecutor) it runs the executor's handlers on this thread.
  // Never call it from an executor thread.
  Result<void> wait();
  std::optional<Result<void>> wait_for(std::chrono::nanoseconds timeout);
  bool done() const;

  // Stops every actor: each finishes its current stage call at the latest; queued messages are destroyed.
  // Thread-safe; a no-op once the run is done or already stopping.
  void cancel(Error reason = Error{errc::cancelled, "cancelled"});

  // The pipeline's token (what stages check); cancelled on any failure too.
  CancelToken cancel_token() const;
  // This pipeline's per-stage counters (progress: messages and items in/out per stage).
  MetricsSnapshot metrics() const;
  const std::string& name() const;
  explicit operator bool() const { return core_ != nullptr; }

 private:
  friend class Pipeline;
  explicit RunHandle(std::shared_ptr<detail::PipelineCore> core) : core_(std::move(core)) {}
  void reset();
  std::shared_ptr<detail::PipelineCore> core_;
  std::shared_ptr<void> listing_;  // keeps the run listed in its MetricsRegistry
};

class Pipeline {
 public:
  explicit Pipeline(std::string name, PipelineOptions options = {});
  Pipeline(Pipeline&&) noexcept = default;
  Pipeline& operator=(Pipeline&&) noexcept = default;
  ~Pipeline();

  // Takes the stage. `name` overrides S::kName / s.name() (names must be unique within the pipeline;
  // they label logs, errors and metrics).
  template <class S>
  StageHandle<S> add(std::unique_ptr<S> stage, std::string name = {}) {
    static_assert(Stage<S>, "not a stage: see engine/stage.h for the contract");
    S* raw = stage.get();
    if (name.empty()) name = default_stage_name(*raw);
    actors_.push_back(std::make_unique<detail::Actor<S>>(std::move(stage), std::move(name)));
    return StageHandle<S>(actors_.size() - 1, raw);
  }

  template <class S, class... Args>
  StageHandle<S> emplace(Args&&... args) {
    return add(std::make_unique<S>(std::forward<Args>(args)...));
  }

  // A mailbox from `from`'s output to `to`'s input; capacity 0 means options.mailbox_capacity. Mistakes
  // the type system cannot catch (a port connected twice, a handle of another pipeline) make run()
  // complete with errc::invalid_argument.
  template <class A, class B>
  void connect(StageHandle<A> from, StageHandle<B> to, size_t capacity = 0) {
    static_assert(HasOut<A>, "`from` is a sink: it has no output");
    static_assert(HasIn<B>, "`to` is a source: it has no input");
    static_assert(std::is_same_v<typename A::Out, typename B::In>, "A::Out and B::In differ");
    if (!owns(from.index_, from.stage_) || !owns(to.index_, to.stage_)) {
      errors_.push_back("connect() got a stage handle of another pipeline");
      return;
    }
    auto& a = static_cast<detail::Actor<A>&>(*actors_[from.index_]);
    auto& b = static_cast<detail::Actor<B>&>(*actors_[to.index_]);
    if (a.output_connected()) {
      errors_.push_back("stage '" + a.name() + "' output is already connected (fan-out is not supported yet)");
      return;
    }
    if (b.input_connected()) {
      errors_.push_back("stage '" + b.name() + "' input is already connected (fan-in is not supported yet)");
      return;
    }
    auto edge = std::make_unique<detail::Edge<typename A::Out>>(capacity ? capacity : options_.mailbox_capacity,
                                                               from.index_, to.index_);
    a.set_output(&edge->mailbox);
    b.set_input(&edge->mailbox);
    edges_.push_back(std::move(edge));
  }

  // Starts every actor on `executor` (which must outlive the handle). Configuration errors do not
  // throw: the handle's wait() reports them as errc::invalid_argument.
  RunHandle run(Executor& executor) &&;

 private:
  bool owns(size_t index, const void* stage) const {
    return index < actors_.size() && actors_[index]->stage_address() == stage;
  }

  std::string name_;
  PipelineOptions options_;
  std::vector<std::unique_ptr<detail::EdgeBase>> edges_;
  std::vector<std::unique_ptr<detail::ActorBase>> actors_;
  std::vector<std::string> errors_;
};

}  // namespace ilre::engine
