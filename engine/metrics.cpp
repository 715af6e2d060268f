#include "engine/metrics.h"

#include <charconv>
#include <utility>

namespace ilre::engine {

const StageMetricsSnapshot* MetricsSnapshot::find(std::string_view pipeline, std::string_view stage) const {
  for (const auto& s : stages) {
    if (s.pipeline == pipeline && s.stage == stage) return &s;
  }
  return nullptr;
}

PipelineMetrics::PipelineMetrics(std::string name, std::vector<std::string> stage_names)
    : name_(std::move(name)),
      stage_names_(std::move(stage_names)),
      counters_(new StageCounters[stage_names_.size()]) {}

void PipelineMetrics::snapshot_into(MetricsSnapshot& out) const {
  constexpr auto r = std::memory_order_relaxed;
  for (size_t i = 0; i < stage_names_.size(); ++i) {
    const StageCounters& c = counters_[i];
    StageMetricsSnapshot s;
    s.pipeline = name_;
    s.stage = stage_names_[i];
    s.messages_in = c.messages_in.load(r);
    s.messages_out = c.messages_out.load(r);
    s.items_in = c.items_in.load(r);
    s.items_out = c.items_out.load(r);
    s.busy_ns = c.busy_ns.load(r);
    s.stall_ns = c.stall_ns.load(r);
    s.queue_depth = c.queue.depth.load(r);
    s.queue_high_water = c.queue.high_water.load(r);
    out.stages.push_back(std::move(s));
  }
}

MetricsSnapshot PipelineMetrics::snapshot() const {
  MetricsSnapshot out;
  snapshot_into(out);
  return out;
}

std::vector<std::shared_ptr<PipelineMetrics>> MetricsRegistry::live() const {
  std::vector<std::shared_ptr<PipelineMetrics>> out;
  std::lock_guard lock(mutex_);
  std::erase_if(pipelines_, [](const auto& w) { return w.expired(); });
  for (const auto& w : pipelines_) {
    if (auto l = w.lock()) out.push_back(l->metrics);
  }
  return out;
}

Result<MetricsRegistry::Registration> MetricsRegistry::add_pipeline(std::string name,
                                                                    std::vector<std::string> stage_names) {
  std::lock_guard lock(mutex_);
  std::erase_if(pipelines_, [](const auto& w) { return w.expired(); });
  for (const auto& w : pipelines_) {
    if (auto l = w.lock(); l && l->metrics->name() == name) {
      return make_error(errc::invalid_argument, "a running pipeline is already named '" + name + "'");
    }
  }
  auto listing = std::make_shared<Listing>();
  listing->metrics = std::make_shared<PipelineMetrics>(std::move(name), std::move(stage_names));
  pipelines_.push_back(listing);
  return Registration{listing->metrics, listing};
}

MetricsSnapshot MetricsRegistry::snapshot() const {
  MetricsSnapshot out;
  for (const auto& p : live()) p->snapshot_into(out);
  return out;
}

std::string MetricsRegistry::to_prometheus(std::string_view prefix) const {
  return engine::to_prometheus(snapshot(), prefix);
}

namespace {

void append_label_value(std::string& out, std::string_view v) {
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
}

void append_number(std::string& out, uint64_t v) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, end);
}

void append_seconds(std::string& out, uint64_t ns) {
  char buf[64];
  // Shortest representation that round-trips; Prometheus parses any Go float syntax.
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, static_cast<double>(ns) * 1e-9);
  out.append(buf, end);
}

struct Family {
  const char* name;
  const char* type;
  const char* help;
  uint64_t StageMetricsSnapshot::*field;
  bool seconds;
};

constexpr Family kFamilies[] = {
    {"stage_messages_in_total", "counter", "Messages a stage took from its input mailbox.",
     &StageMetricsSnapshot::messages_in, false},
    {"stage_messages_out_total", "counter", "Messages a stage delivered to its output mailbox.",
     &StageMetricsSnapshot::messages_out, false},
    {"stage_items_in_total", "counter", "Stage-defined units consumed (e.g. tokens).", &StageMetricsSnapshot::items_in,
     false},
    {"stage_items_out_total", "counter", "Stage-defined units produced (e.g. tokens).",
     &StageMetricsSnapshot::items_out, false},
    {"stage_busy_seconds_total", "counter", "Time spent inside the stage's own code.", &StageMetricsSnapshot::busy_ns,
     true},
    {"stage_stall_seconds_total", "counter", "Time suspended on a full output mailbox or the memory budget.",
     &StageMetricsSnapshot::stall_ns, true},
    {"stage_queue_depth", "gauge", "Messages waiting in the stage's input mailbox.", &StageMetricsSnapshot::queue_depth,
     false},
    {"stage_queue_depth_max", "gauge", "High-water mark of the stage's input mailbox.",
     &StageMetricsSnapshot::queue_high_water, false},
};

}  // namespace

std::string to_prometheus(const MetricsSnapshot& snapshot, std::string_view prefix) {
  std::string out;
  out.reserve(256 + snapshot.stages.size() * 8 * 96);
  for (const Family& f : kFamilies) {
    out += "# HELP ";
    out += prefix;
    out += f.name;
    out += ' ';
    out += f.help;
    out += "\n# TYPE ";
    out += prefix;
    out += f.name;
    out += ' ';
    out += f.type;
    out += '\n';
    for (const auto& s : snapshot.stages) {
      out += prefix;
      out += f.name;
      out += "{pipeline=\"";
      append_label_value(out, s.pipeline);
      out += "\",stage=\"";
      append_label_value(out, s.stage);
      out += "\"} ";
      if (f.seconds) {
        append_seconds(out, s.*f.field);
      } else {
        append_number(out, s.*f.field);
      }
      out += '\n';
    }
  }
  return out;
}

}  // namespace ilre::engine
