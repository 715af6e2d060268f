#include "engine/pipeline.h"

#include <set>

#include <spdlog/spdlog.h>

namespace ilre::engine {

Result<void> PipelineOptions::validate() const {
  if (mailbox_capacity < 1 || mailbox_capacity > (size_t{1} << 24)) {
    return make_error(errc::invalid_argument, "mailbox_capacity must be in [1, 2^24]");
  }
  if (pending_capacity < 1) return make_error(errc::invalid_argument, "pending_capacity must be at least 1");
  if (quota < 1) return make_error(errc::invalid_argument, "quota must be at least 1");
  if (timeout.count() < 0) return make_error(errc::invalid_argument, "timeout must not be negative");
  return {};
}

namespace detail {

// ---------------------------------------------------------------------------------------------------
// ActorBase

void ActorBase::attach(PipelineCore* core, size_t index, StageCounters* counters) {
  core_ = core;
  index_ = index;
  counters_ = counters;
  on_attach();
}

void ActorBase::notify() {
  uint8_t s = sched_.load(std::memory_order_acquire);
  for (;;) {
    if (s == kIdle) {
      if (sched_.compare_exchange_weak(s, kScheduled, std::memory_order_acq_rel, std::memory_order_acquire)) {
        core_->post_run(this);
        return;
      }
    } else if (s == kRunning) {
      // The running actor will see this when it tries to go idle and look at its mailboxes again.
      if (sched_.compare_exchange_weak(s, kNotified, std::memory_order_acq_rel, std::memory_order_acquire)) return;
    } else {
      return;  // already scheduled, already notified, or dead
    }
  }
}

void ActorBase::run() {
  sched_.store(kRunning, std::memory_order_release);
  if (!logged_start_) {
    logged_start_ = true;
    spdlog::debug("pipeline '{}': stage '{}' started", core_->name, name_);
  }
  for (;;) {
    end_stall();
    switch (drive(core_->options.quota)) {
      case Step::done:
        finish(true);
        return;
      case Step::stop:
        finish(false);
        return;
      case Step::yield:
        sched_.store(kScheduled, std::memory_order_release);
        core_->post_run(this);
        return;
      case Step::suspend: {
        uint8_t expected = kRunning;
        if (sched_.compare_exchange_strong(expected, kIdle, std::memory_order_acq_rel, std::memory_order_acquire)) {
          return;
        }
        sched_.store(kRunning, std::memory_order_release);  // notified meanwhile: look again
        break;
      }
    }
  }
}

void ActorBase::finish(bool normal) {
  end_stall();
  shutdown();
  if (normal) {
    spdlog::debug("pipeline '{}': stage '{}' finished ({} in, {} out)", core_->name, name_,
                  counters_->messages_in.load(std::memory_order_relaxed),
                  counters_->messages_out.load(std::memory_order_relaxed));
  } else {
    spdlog::debug("pipeline '{}': stage '{}' stopped", core_->name, name_);
  }
  sched_.store(kDead, std::memory_order_release);
  core_->actor_finished(normal);
}

ActorBase::Step ActorBase::fail(Error error) {
  if (core_->stopping()) return Step::stop;  // a consequence of the first failure or cancel, not news
  spdlog::debug("pipeline '{}': stage '{}' failed: {}", core_->name, name_, error.message);
  error.message = "stage '" + name_ + "': " + error.message;
  core_->fail(std::move(error));
  return Step::stop;
}

int64_t ActorBase::now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void ActorBase::begin_stall() {
  if (stall_since_ns_ == 0) stall_since_ns_ = now_ns();
}

void ActorBase::end_stall() {
  if (stall_since_ns_ == 0) return;
  counters_->stall_ns.fetch_add(static_cast<uint64_t>(now_ns() - stall_since_ns_), std::memory_order_relaxed);
  stall_since_ns_ = 0;
}

// ---------------------------------------------------------------------------------------------------
// PipelineCore

PipelineCore::PipelineCore(std::string name_in, PipelineOptions options_in, Executor& executor_in)
    : name(std::move(name_in)), options(std::move(options_in)), executor(executor_in) {}

PipelineCore::~PipelineCore() = default;

void PipelineCore::start(std::vector<std::string> build_errors) {
  std::vector<std::string> stage_names;
  for (const auto& a : actors) stage_names.push_back(a->name());

  auto invalid = [&](std::string message) {
    spdlog::debug("pipeline '{}': not started: {}", name, message);
    metrics = std::make_shared<PipelineMetrics>(name, stage_names);
    complete(make_error(errc::invalid_argument, "pipeline '" + name + "': " + message));
  };
  if (auto v = options.validate(); !v) return invalid(v.error().message);
  if (!build_errors.empty()) return invalid(build_errors.front());
  if (actors.empty()) return invalid("no stages");
  std::set<std::string> seen;
  for (const auto& a : actors) {
    if (!seen.insert(a->name()).second) return invalid("two stages are named '" + a->name() + "'");
    if (a->needs_input() && !a->input_connected()) return invalid("stage '" + a->name() + "' has no input");
    if (a->needs_output() && !a->output_connected()) return invalid("stage '" + a->name() + "' has no output");
  }
  if (options.registry) {
    auto m = options.registry->add_pipeline(name, stage_names);
    if (!m) return invalid(m.error().message);
    metrics = std::move(m->metrics);
    listing_ = std::move(m->listing);
  } else {
    metrics = std::make_shared<PipelineMetrics>(name, stage_names);
  }

  for (size_t i = 0; i < actors.size(); ++i) actors[i]->attach(this, i, &metrics->stage(i));
  for (auto& e : edges) e->wire(actors[e->producer].get(), actors[e->consumer].get(), &metrics->stage(e->consumer).queue);
  live_.store(actors.size(), std::memory_order_release);

  spdlog::debug("pipeline '{}': starting {} stages", name, actors.size());
  if (options.timeout.count() > 0) {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(options.timeout).count();
    deadline_timer_ = executor.post_after(options.timeout, [weak = weak_from_this(), ms] {
      if (auto core = weak.lock()) {
        core->fail(Error{errc::cancelled, "deadline of " + std::to_string(ms) + " ms exceeded"});
      }
    });
  }
  // The callback holds only a weak reference: the parent (a daemon-wide token) may outlive this run.
  parent_callback_ = options.parent.on_cancel([weak = weak_from_this()] {
    if (auto core = weak.lock()) {
      auto reason = core->options.parent.reason();
      core->fail(reason ? *reason : Error{errc::cancelled, "cancelled"});
    }
  });
  for (auto& a : actors) a->notify();
}

void PipelineCore::fail(Error error) {
  if (completed_.load(std::memory_order_acquire)) return;  // a late deadline or cancel changes nothing
  if (!cancel_.cancel(error)) return;
  spdlog::debug("pipeline '{}': stopping: {}", name, error.message);
  for (auto& e : edges) e->abort(error);
  for (auto& a : actors) a->notify();
}

void PipelineCore::post_run(ActorBase* actor) {
  tasks_.fetch_add(1, std::memory_order_acq_rel);
  executor.post([this, actor] {
    actor->run();
    task_done();  // last use of `this` in the task
  });
}

void PipelineCore::actor_finished(bool normal) {
  if (!normal) abnormal_.store(true, std::memory_order_release);
  live_.fetch_sub(1, std::memory_order_acq_rel);
}

void PipelineCore::task_done() {
  // Dead actors are never posted again, so once live_ is 0 tasks_ only falls, and exactly one task sees
  // it reach 0 with no live actor. A live_ decrement happens before its own task's decrement here.
  if (tasks_.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  if (live_.load(std::memory_order_acquire) != 0) return;
  if (!abnormal_.load(std::memory_order_acquire)) return complete({});
  auto reason = cancel_.token().reason();
  complete(tl::unexpected<Error>(reason ? *reason : Error{errc::internal, "pipeline stopped without a reason"}));
}

std::function<void()> PipelineCore::waker_for(size_t index) {
  return [weak = weak_from_this(), index] {
    if (auto core = weak.lock()) core->actors[index]->notify();
  };
}

void PipelineCore::complete(Result<void> result) {
  if (deadline_timer_) executor.cancel_timer(deadline_timer_);
  options.parent.remove_callback(parent_callback_);
  if (result) {
    spdlog::debug("pipeline '{}': done", name);
  } else {
    spdlog::debug("pipeline '{}': failed: {}", name, result.error().message);
  }
  completed_.store(true, std::memory_order_release);
  // Copies, because once done_ is set a waiter (or the callback itself, by dropping the RunHandle) may
  // destroy this core: nothing below the unlock touches it.
  auto on_complete = options.on_complete;
  std::optional<Result<void>> for_callback;
  if (on_complete) for_callback = result;
  {
    std::lock_guard lock(mutex_);
    result_ = std::move(result);
    done_ = true;
    cv_.notify_all();
  }
  if (on_complete) on_complete(*for_callback);
}

bool PipelineCore::done() const {
  std::lock_guard lock(mutex_);
  return done_;
}

std::optional<Result<void>> PipelineCore::wait_for(std::chrono::nanoseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::unique_lock lock(mutex_);
  while (!done_) {
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    if (executor.runs_on_caller()) {
      // A single-threaded executor makes progress only on this thread. Posts may come from other
      // threads (a cancel), so poll briefly when its queue is empty.
      lock.unlock();
      bool ran = executor.run_one();
      lock.lock();
      if (!ran && !done_) cv_.wait_for(lock, std::chrono::milliseconds(1));
    } else {
      cv_.wait_until(lock, deadline);
    }
  }
  return result_;
}

Result<void> PipelineCore::wait() {
  for (;;) {
    if (auto r = wait_for(std::chrono::hours(24))) return *r;
  }
}

MetricsSnapshot PipelineCore::snapshot() const { return metrics ? metrics->snapshot() : MetricsSnapshot{}; }

}  // namespace detail

// ---------------------------------------------------------------------------------------------------
// RunHandle, Pipeline

RunHandle& RunHandle::operator=(RunHandle&& other) noexcept {
  if (this != &other) {
    reset();
    core_ = std::move(other.core_);
    listing_ = std::move(other.listing_);
  }
  return *this;
}

RunHandle::~RunHandle() { reset(); }

void RunHandle::reset() {
  if (!core_) return;
  if (!core_->done()) {
    core_->fail(Error{errc::cancelled, "run handle destroyed"});
    core_->wait();
  }
  listing_.reset();
  core_.reset();
}

Result<void> RunHandle::wait() {
  if (!core_) return make_error(errc::invalid_argument, "empty run handle");
  return core_->wait();
}

std::optional<Result<void>> RunHandle::wait_for(std::chrono::nanoseconds timeout) {
  if (!core_) return make_error(errc::invalid_argument, "empty run handle");
  return core_->wait_for(timeout);
}

bool RunHandle::done() const { return !core_ || core_->done(); }

void RunHandle::cancel(Error reason) {
  if (core_ && !core_->done()) core_->fail(std::move(reason));
}

CancelToken RunHandle::cancel_token() const { return core_ ? core_->token() : CancelToken{}; }

MetricsSnapshot RunHandle::metrics() const { return core_ ? core_->snapshot() : MetricsSnapshot{}; }

const std::string& RunHandle::name() const {
  static const std::string kEmpty;
  return core_ ? core_->name : kEmpty;
}

Pipeline::Pipeline(std::string name, PipelineOptions options) : name_(std::move(name)), options_(std::move(options)) {}

Pipeline::~Pipeline() = default;

RunHandle Pipeline::run(Executor& executor) && {
  auto core = std::make_shared<detail::PipelineCore>(std::move(name_), std::move(options_), executor);
  core->edges = std::move(edges_);
  core->actors = std::move(actors_);
  core->start(std::move(errors_));
  RunHandle handle(core);
  handle.listing_ = core->take_listing();
  return handle;
}

}  // namespace ilre::engine
