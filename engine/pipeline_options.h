// Run-time options of one pipeline. Defaults suit a pipeline of a few stages whose messages are document
// chunks (milliseconds of work each); the config-driven builder maps YAML keys onto this struct.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>

#include "engine/cancel.h"
#include "engine/memory_budget.h"
#include "engine/metrics.h"
#include "ilre/error.h"

namespace ilre::engine {

struct PipelineOptions {
  // Mailbox capacity for connect() calls that give none. Memory in flight per edge is at most
  // mailbox_capacity + pending_capacity messages (+1 inside each stage).
  size_t mailbox_capacity = 8;
  // Surplus one stage step may emit beyond a full mailbox (see Emitter).
  size_t pending_capacity = 4;
  // Stage calls per scheduling turn before an actor yields its thread to other actors and pipelines.
  int quota = 16;
  // Cancels the run with errc::cancelled this long after run(); zero means no deadline.
  std::chrono::nanoseconds timeout{0};
  // Shared across pipelines; must outlive every message of the run. Null: no budget.
  MemoryBudget* budget = nullptr;
  // Where this pipeline's counters are listed while its RunHandle lives. Null: only RunHandle::metrics().
  MetricsRegistry* registry = nullptr;
  // Cancels this pipeline when it fires (daemon shutdown, client gone); default: never.
  CancelToken parent;
  // Called once with the final result, on the thread that finished the run, once the run is done (a
  // concurrent wait() may already have returned). It may destroy the run's RunHandle (how a daemon drops
  // a finished request); it must not block on other runs of the same executor.
  std::function<void(const Result<void>&)> on_complete;

  Result<void> validate() const;
};

}  // namespace ilre::engine
