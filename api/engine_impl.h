// Engine::Impl: what an Engine holds (the model, the compute pool, the actor executor, the memory budget)
// and the operations the library's faces share. Internal to api/: engine.cpp has the public methods and
// ask/generate, sharded_ingest.cpp the ingest of one document by several pipelines at once.
#pragma once

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "engine/executor.h"
#include "engine/memory_budget.h"
#include "engine/metrics.h"
#include "engine/pipeline.h"
#include "ilre/engine.h"
#include "model/kernels/compute_pool.h"
#include "model/model.h"
#include "stages/decode.h"
#include "stages/prefill.h"
#include "stages/read.h"
#include "storage/store_types.h"
#include "storage/store_writer.h"

namespace ilre {

using Clock = std::chrono::steady_clock;

inline double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

struct CancelHandle::State {
  engine::CancelSource source;
};

// The settings an ingest used: stored with the keys and read back by ask, because the streaming state is
// only meaningful with the sink/window/chunk/numerics that made it.
inline nlohmann::json ingest_settings(const Config& cfg, const stages::PrefillSettings& s) {
  return {{"sink", s.sink},
          {"window", s.window},
          {"chunk", s.chunk},
          {"positions", std::string(stages::prefill_positions_name(s.positions))},
          {"numerics", cfg.decode.numerics},
          {"keys", "pre-rope"},
          {"config_yaml", to_yaml(cfg)}};
}

// Names were checked by Config::validate().
inline model::Numerics numerics_of(const std::string& name) {
  return model::numerics_from_name(name).value_or(model::Numerics::llama_cpp);
}
inline model::KvType kv_type_of(const std::string& name) { return model::kv_type_from_name(name).value_or(model::KvType::f16); }

// One shard of a sharded ingest: the positions it keeps, what it runs on, and what its store's notes say
// about the whole (checked when the shards are merged).
struct ShardRun {
  stages::ShardRange range;
  int index = 0;
  int count = 1;
  int64_t document_tokens = 0;
  model::ComputePool* pool = nullptr;    // null: the engine's
  engine::Executor* executor = nullptr;  // null: the engine's
};

struct Engine::Impl {
  Config cfg;
  std::shared_ptr<const model::Model> model;
  std::unique_ptr<model::ComputePool> pool;
  std::unique_ptr<engine::ThreadPoolExecutor> executor;
  engine::MetricsRegistry registry;
  std::unique_ptr<engine::MemoryBudget> budget;
  int32_t layer = -1;
  std::atomic<uint64_t> runs{0};
  mutable std::mutex finished_mutex;
  std::map<std::string, StageStats> finished;  // per stage, over finished runs

  void add_finished(const engine::MetricsSnapshot& m) {
    std::lock_guard<std::mutex> lock(finished_mutex);
    for (const auto& st : m.stages) {
      StageStats& t = finished[st.stage];
      t.stage = st.stage;
      t.busy_seconds += static_cast<double>(st.busy_ns) / 1e9;
      t.items_out += st.items_out;
    }
  }

  std::string run_name(const char* kind) { return std::string(kind) + "-" + std::to_string(runs.fetch_add(1)); }

  engine::PipelineOptions pipeline_options(const CancelHandle& cancel) {
    engine::PipelineOptions o;
    o.mailbox_capacity = static_cast<size_t>(cfg.pipeline.queue_capacity);
    o.budget = budget.get();
    o.registry = &registry;
    o.parent = cancel.state()->source.token();
    return o;
  }

  stages::PrefillSettings prefill_settings(int32_t at_layer) const {
    stages::PrefillSettings s{.layer = at_layer,
                              .sink = cfg.prefill.sink,
                              .window = cfg.prefill.window,
                              .chunk = cfg.prefill.chunk,
                              .numerics = numerics_of(cfg.decode.numerics),
                              .positions = stages::prefill_positions_from_name(cfg.prefill.positions)
                                               .value_or(stages::PrefillPositions::absolute)};
    return s.clamped(model->hparams());
  }

  // Segments end on chunk boundaries, where the prefill can hand over a resumable state.
  int64_t segment_tokens(const stages::PrefillSettings& settings) const {
    return std::max<int64_t>(1, cfg.store.segment_tokens / settings.chunk) * settings.chunk;
  }

  // recall.budget, capped where the compressed prompt and the answer would not fit the trained context (a
  // 1024-token default on a 512-token model); a per-request budget is not capped and errors instead.
  int64_t budget_for(int64_t n_query, int32_t max_tokens) const {
    const int64_t trained = model->hparams().n_ctx_train;
    if (cfg.recall.budget > 0) {
      // Past the trained context only where decode.dca / decode.context let the final pass go.
      const int64_t ctx = model::sequence_capacity(stages::long_context_of(cfg.decode), trained);
      const int64_t room = std::max<int64_t>(16, ctx - n_query - max_tokens);
      if (cfg.recall.budget > room) {
        spdlog::info("recall.budget {} capped at {}: the prompt and {} answer tokens must fit the context of {}",
                     cfg.recall.budget, room, max_tokens, ctx);
      }
      return std::min(cfg.recall.budget, room);
    }
    return std::max<int64_t>(16, static_cast<int64_t>(0.75 * static_cast<double>(trained)) - n_query - max_tokens);
  }

  // What a new store records: the model, l_R, the key shape and the settings its state depends on.
  storage::StoreMeta store_meta() const {
    const auto& hp = model->hparams();
    storage::StoreMeta meta;
    meta.model_fingerprint = model->fingerprint();
    meta.model_name = model->name();
    meta.retrieval_layer = layer;
    meta.n_kv_heads = static_cast<int32_t>(hp.n_head_kv);
    meta.head_dim = static_cast<int32_t>(hp.head_dim_k);
    meta.dtype = *storage::key_dtype_from_name(cfg.store.key_dtype);
    meta.config = ingest_settings(cfg, prefill_settings(layer));
    return meta;
  }

  // An empty store (a document stream before its first append).
  Result<void> create_store(const std::string& store_dir) const {
    storage::WriteOptions wo;
    wo.zstd_level = cfg.store.compression_level;
    auto w = storage::StoreWriter::create(store_dir, store_meta(), wo);
    if (!w) return tl::unexpected(w.error());
    return {};
  }

  // A new store or an append (options.append); with `shard`, one shard of a new document.
  Result<IngestReport> ingest(std::unique_ptr<stages::ByteSource> source, int64_t total_bytes,
                              const std::string& store_dir, IngestOptions& options, const ShardRun* shard = nullptr);
  // options.shards > 1 or options.shard_count > 0 (sharded_ingest.cpp).
  Result<IngestReport> ingest_sharded(const std::string& path, const std::string& store_dir, IngestOptions& options);
  Result<int64_t> count_tokens(const std::string& path, const CancelHandle& cancel);
  Result<Answer> ask(const std::string& store_dir, const std::string& question, AskOptions& options);
  Result<Completion> complete(const std::vector<int32_t>& prompt, GenerateOptions& options);
};

}  // namespace ilre
