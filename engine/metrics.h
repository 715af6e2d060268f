// Metrics of running pipelines: per pipeline and per stage counters, cheap enough to update per message
// (relaxed atomics, no locks), read by snapshot() and served as Prometheus text.
//
// Lifetime: a pipeline owns its PipelineMetrics; a MetricsRegistry only keeps weak references to a
// listing held by the RunHandle, so a finished pipeline's series disappear from the exposition when its
// handle is destroyed (a daemon that serves many requests does not accumulate dead series).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "engine/mailbox.h"
#include "ilre/error.h"

namespace ilre::engine {

// Live counters of one stage. Written by the stage's actor (and its input mailbox for `queue`).
struct StageCounters {
  std::atomic<uint64_t> messages_in{0};   // taken from the input mailbox
  std::atomic<uint64_t> messages_out{0};  // delivered to the output mailbox
  std::atomic<uint64_t> items_in{0};      // stage-defined units (tokens, bytes), see StageContext
  std::atomic<uint64_t> items_out{0};
  std::atomic<uint64_t> busy_ns{0};   // inside start/produce/process/finish
  std::atomic<uint64_t> stall_ns{0};  // suspended on a full output mailbox or an exhausted memory budget
  QueueGauge queue;                   // the stage's input mailbox
};

struct StageMetricsSnapshot {
  std::string pipeline;
  std::string stage;
  uint64_t messages_in = 0;
  uint64_t messages_out = 0;
  uint64_t items_in = 0;
  uint64_t items_out = 0;
  uint64_t busy_ns = 0;
  uint64_t stall_ns = 0;
  uint64_t queue_depth = 0;
  uint64_t queue_high_water = 0;
};

struct MetricsSnapshot {
  // Pipelines in registration order, stages in the order they were added to their pipeline.
  std::vector<StageMetricsSnapshot> stages;

  const StageMetricsSnapshot* find(std::string_view pipeline, std::string_view stage) const;
};

class PipelineMetrics {
 public:
  PipelineMetrics(std::string name, std::vector<std::string> stage_names);

  const std::string& name() const { return name_; }
  size_t size() const { return stage_names_.size(); }
  StageCounters& stage(size_t i) { return counters_[i]; }
  void snapshot_into(MetricsSnapshot& out) const;
  MetricsSnapshot snapshot() const;

 private:
  std::string name_;
  std::vector<std::string> stage_names_;
  std::unique_ptr<StageCounters[]> counters_;  // [stage_names_.size()]; atomics, so not in a vector
};

class MetricsRegistry {
 public:
  struct Registration {
    std::shared_ptr<PipelineMetrics> metrics;
    // The pipeline stays listed (and its name taken) while this lives; the RunHandle holds it, so a
    // finished run disappears when its handle does, not when the last stray actor task lets go.
    std::shared_ptr<void> listing;
  };

  // Registers a pipeline's counters; errc::invalid_argument if a listed pipeline already has this name
  // (two series with the same labels would make the exposition invalid).
  Result<Registration> add_pipeline(std::string name, std::vector<std::string> stage_names);

  MetricsSnapshot snapshot() const;
  std::string to_prometheus(std::string_view prefix = "ilre_") const;

 private:
  struct Listing {
    std::shared_ptr<PipelineMetrics> metrics;
  };
  std::vector<std::shared_ptr<PipelineMetrics>> live() const;

  mutable std::mutex mutex_;
  mutable std::vector<std::weak_ptr<Listing>> pipelines_;  // expired entries pruned on access
};

// Prometheus text exposition (version 0.0.4) of a snapshot: one family per counter, samples labelled
// {pipeline="...",stage="..."}; times in seconds.
std::string to_prometheus(const MetricsSnapshot& snapshot, std::string_view prefix = "ilre_");

}  // namespace ilre::engine
