// Sharded ingest (issue 10 §3): one document cut into ranges of whole segments, each ingested by its own
// pipeline — here on threads, or in other processes and machines with IngestOptions::shard_index — and the
// shard stores merged into one whose keys, tokens and state are bit-identical to a sequential ingest's.
//
// Why it is exact: under the Λ mask a layer sees only the sink and the last W tokens (plus its chunk) of
// the layer below, so the caches at a shard's start depend only on the sink and on the l_R·⌈W/C⌉ chunks
// before it (StreamingPrefill::receptive_field). Each shard streams those again, with the same chunk
// alignment and absolute positions, and keeps keys only from its own start (stages/prefill.h ShardRange).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <thread>
#include <vector>

#include "api/engine_impl.h"
#include "stages/count.h"
#include "stages/tokenize.h"
#include "storage/store_merge.h"
#include "storage/store_reader.h"

namespace fs = std::filesystem;

namespace ilre {
namespace {

// Shard k of `count`: whole segments, as even as the segments allow (the last one may be short).
stages::ShardRange shard_range(int64_t n_tokens, int64_t segment, int k, int count) {
  const int64_t n_segments = (n_tokens + segment - 1) / segment;
  return {.begin = n_segments * k / count * segment, .end = std::min(n_tokens, n_segments * (k + 1) / count * segment)};
}

// Only these settings shape the keys and the state; the rest of a config (threads, paths, recall and decode
// settings) may differ between the machines of a sharded ingest.
bool same_key_settings(const nlohmann::json& ours, const nlohmann::json& theirs) {
  for (const char* k : {"sink", "window", "chunk", "positions", "numerics", "keys"}) {
    if (ours.value(k, nlohmann::json()) != theirs.value(k, nlohmann::json())) return false;
  }
  return true;
}

// The merged store's notes: the document's (the same in every shard, which each read the whole document),
// with the per-shard counts summed. Refuses a list that is not shards 0..K-1 of one K-way ingest of the
// whole document.
Result<nlohmann::json> merged_notes(std::span<const nlohmann::json> notes, int64_t n_tokens) {
  const auto count = static_cast<int64_t>(notes.size());
  bool complete = true;
  int64_t nonfinite = 0;
  for (int64_t k = 0; k < count; ++k) {
    const nlohmann::json shard = notes[k].value("shard", nlohmann::json::object());
    if (shard.empty()) {
      return make_error(errc::invalid_argument, "store " + std::to_string(k + 1) + " of the " + std::to_string(count) +
                                                    " given is not a shard of a sharded ingest");
    }
    const int64_t index = shard.value("index", int64_t{-1});
    const int64_t of = shard.value("count", int64_t{-1});
    if (const int64_t doc = shard.value("document_tokens", int64_t{-1}); doc != n_tokens) {
      return make_error(errc::invalid_argument, "the shards hold " + std::to_string(n_tokens) +
                                                    " tokens of a document of " + std::to_string(doc));
    }
    if (index != k || of != count) {
      return make_error(errc::invalid_argument,
                        "store " + std::to_string(k + 1) + " of the " + std::to_string(count) + " given is " +
                            "shard " + std::to_string(index) + " of " + std::to_string(of) +
                            ": give shards 0.." + std::to_string(count - 1) + " of one sharded ingest, in order");
    }
    complete = complete && notes[k].value("complete", false);
    nonfinite += notes[k].value("nonfinite_keys", int64_t{0});
  }
  nlohmann::json out = notes.front();
  out.erase("shard");
  out["complete"] = complete;
  out["nonfinite_keys"] = nonfinite;
  out["merged_shards"] = count;
  return out;
}

// Sums what the shards report; the document-wide counts (bytes read, replaced bytes) are each shard's.
IngestReport combine(const std::vector<IngestReport>& shards) {
  IngestReport rep = shards.front();
  rep.tokens_added = rep.segments_added = 0;
  rep.raw_key_bytes = rep.stored_key_bytes = 0;
  rep.timings_ms.clear();
  for (const IngestReport& s : shards) {
    rep.tokens_added += s.tokens_added;
    rep.segments_added += s.segments_added;
    rep.raw_key_bytes += s.raw_key_bytes;
    rep.stored_key_bytes += s.stored_key_bytes;
    for (const auto& [stage, ms] : s.timings_ms) {
      if (stage != "total") rep.timings_ms[stage] += ms;  // busy time over all shards
    }
  }
  rep.key_compression_ratio = rep.stored_key_bytes ? double(rep.raw_key_bytes) / double(rep.stored_key_bytes) : 0.0;
  return rep;
}

Result<void> check_new_store(const std::string& store_dir) {
  std::error_code ec;
  if (fs::exists(store_dir, ec) && !(fs::is_directory(store_dir, ec) && fs::is_empty(store_dir, ec))) {
    return make_error(errc::invalid_argument, "store " + store_dir + " already exists and is not empty (a sharded "
                                              "ingest makes a new store)");
  }
  return {};
}

// Shard stores of an in-process sharded ingest live beside the store and go once merged. A leftover of a
// killed run (an ilre store under our name) is replaced; anything else there is refused.
Result<std::string> shard_dir(const std::string& store_dir, int k) {
  const std::string dir = fs::path(store_dir).lexically_normal().string() + ".shard-" + std::to_string(k);
  std::error_code ec;
  if (fs::exists(dir, ec)) {
    if (!fs::exists(fs::path(dir) / "manifest.json", ec) && !(fs::is_directory(dir, ec) && fs::is_empty(dir, ec))) {
      return make_error(errc::invalid_argument, "cannot use " + dir + " for a shard: it exists and is not an ilre store");
    }
    fs::remove_all(dir, ec);
  }
  return dir;
}

int64_t file_bytes(const std::string& path) {
  std::error_code ec;
  const auto n = fs::file_size(path, ec);
  return ec ? -1 : static_cast<int64_t>(n);
}

}  // namespace

Result<int64_t> Engine::Impl::count_tokens(const std::string& path, const CancelHandle& cancel) {
  auto source = stages::open_file_source(path);
  if (!source) return tl::unexpected(source.error());
  engine::Pipeline p(run_name("count"), pipeline_options(cancel));
  auto read = p.emplace<stages::ReadStage>(std::move(*source), cfg.pipeline.read_chunk_bytes);
  auto tok = p.emplace<stages::TokenizeStage>(model->vocab_ptr(), prefill_settings(layer).chunk, 0, true, std::nullopt,
                                              false);
  auto count = p.emplace<stages::CountStage>();
  p.connect(read, tok);
  p.connect(tok, count);
  engine::RunHandle run = std::move(p).run(*executor);
  if (auto r = run.wait(); !r) return tl::unexpected(r.error());
  return count.stage().tokens();
}

Result<IngestReport> Engine::Impl::ingest_sharded(const std::string& path, const std::string& store_dir,
                                                  IngestOptions& options) {
  const auto t0 = Clock::now();
  const bool one = options.shard_count > 0;
  if (options.append || options.keep_open) {
    return make_error(errc::invalid_argument, "a sharded ingest makes a new store of a whole document (no append, no keep-open)");
  }
  if (path == "-") return make_error(errc::invalid_argument, "a sharded ingest reads the document once per shard: give a file, not stdin");
  if (one && (options.shard_index < 0 || options.shard_index >= options.shard_count)) {
    return make_error(errc::invalid_argument, "shard " + std::to_string(options.shard_index) + " of " +
                                                  std::to_string(options.shard_count) + " does not exist (0.." +
                                                  std::to_string(options.shard_count - 1) + ")");
  }
  if (!one && (options.shards < 2 || options.shards > 64)) {
    return make_error(errc::invalid_argument, "shards must be in 2..64, not " + std::to_string(options.shards));
  }
  if (auto r = check_new_store(store_dir); !r) return tl::unexpected(r.error());
  const int64_t bytes = file_bytes(path);
  if (bytes == 0) return make_error(errc::invalid_argument, "document '" + path + "' is empty");

  auto counted = count_tokens(path, options.cancel);
  if (!counted) return tl::unexpected(counted.error());
  const int64_t n = *counted;
  const double count_ms = ms_since(t0);
  const int64_t segment = segment_tokens(prefill_settings(layer));
  const int64_t n_segments = (n + segment - 1) / segment;
  const int count = one ? options.shard_count : static_cast<int>(std::min<int64_t>(options.shards, n_segments));
  if (one && options.shard_index >= n_segments) {
    return make_error(errc::invalid_argument, "the document has " + std::to_string(n) + " tokens, " +
                                                  std::to_string(n_segments) + " segments of " + std::to_string(segment) +
                                                  ": shard " + std::to_string(options.shard_index) + " of " +
                                                  std::to_string(count) + " would be empty (use at most " +
                                                  std::to_string(n_segments) + " shards)");
  }
  if (one) {
    spdlog::info("shard {} of {} of a {}-token document ({}-token segments)", options.shard_index, count, n, segment);
  } else {
    spdlog::info("sharded ingest of {} tokens: {} shards of whole {}-token segments", n, count, segment);
  }

  if (one) {
    ShardRun run{.range = shard_range(n, segment, options.shard_index, count), .index = options.shard_index,
                 .count = count, .document_tokens = n};
    auto source = stages::open_file_source(path);
    if (!source) return tl::unexpected(source.error());
    auto rep = ingest(std::move(*source), bytes, store_dir, options, &run);
    if (rep) {
      rep->timings_ms["count"] = count_ms;
      rep->timings_ms["total"] = ms_since(t0);
      rep->tokens_per_second = double(rep->tokens_added) / std::max(1e-9, rep->timings_ms["total"] / 1000.0);
    }
    return rep;
  }

  std::vector<std::string> dirs;
  for (int k = 0; k < count; ++k) {
    auto d = shard_dir(store_dir, k);
    if (!d) return tl::unexpected(d.error());
    dirs.push_back(*d);
  }
  auto remove_shards = [&] {
    std::error_code ec;
    for (const std::string& d : dirs) fs::remove_all(d, ec);
  };
  // The engine's compute threads, shared out: K single-threaded pipelines need no fork-join per matmul.
  const int threads = std::max(1, pool->size() / count);
  std::mutex progress_mutex;
  std::vector<Progress> progress(static_cast<size_t>(count));
  auto report_progress = [&](int k, const Progress& p) {
    if (!options.on_progress) return;
    std::lock_guard<std::mutex> lock(progress_mutex);
    progress[static_cast<size_t>(k)] = p;
    Progress all;
    all.phase = "ingest";
    all.total = bytes;
    for (const Progress& s : progress) {
      all.processed += s.processed / count;  // each shard reads the whole document
      all.tokens += s.tokens;
    }
    all.elapsed_ms = ms_since(t0);
    options.on_progress(all);
  };
  std::vector<std::optional<Result<IngestReport>>> results(static_cast<size_t>(count));
  {
    std::vector<std::jthread> workers;
    for (int k = 0; k < count; ++k) {
      workers.emplace_back([&, k] {
        model::ComputePool compute(threads);
        engine::ThreadPoolExecutor actors(2);
        IngestOptions o;
        o.cancel = options.cancel;
        o.on_progress = [&, k](const Progress& p) { report_progress(k, p); };
        ShardRun run{.range = shard_range(n, segment, k, count), .index = k, .count = count, .document_tokens = n,
                     .pool = &compute, .executor = &actors};
        auto source = stages::open_file_source(path);
        auto r = source ? ingest(std::move(*source), bytes, dirs[static_cast<size_t>(k)], o, &run)
                        : Result<IngestReport>(tl::unexpected(source.error()));
        // One shard failing dooms the store: stop the others now rather than after their work.
        if (!r && r.error().code != errc::cancelled) options.cancel.cancel("shard " + std::to_string(k) + " failed");
        results[static_cast<size_t>(k)] = std::move(r);
      });
    }
  }
  std::vector<IngestReport> reports;
  std::optional<Error> failure;
  for (auto& r : results) {
    if (*r) {
      reports.push_back(std::move(**r));
    } else if (!failure || failure->code == errc::cancelled) {
      failure = r->error();  // the first shard's own error over the cancellations it caused
    }
  }
  if (failure) {
    remove_shards();
    return tl::unexpected(*failure);
  }
  const auto t_merge = Clock::now();
  std::vector<fs::path> paths(dirs.begin(), dirs.end());
  storage::MergeOptions mo;
  mo.write.zstd_level = cfg.store.compression_level;
  mo.same_config = same_key_settings;
  mo.merge_notes = merged_notes;
  auto merged = storage::merge_stores(store_dir, paths, mo);
  remove_shards();
  if (!merged) return tl::unexpected(merged.error());

  IngestReport rep = combine(reports);
  rep.store_dir = store_dir;
  rep.total_tokens = merged->n_tokens;
  rep.timings_ms["count"] = count_ms;
  rep.timings_ms["merge"] = ms_since(t_merge);
  rep.timings_ms["total"] = ms_since(t0);
  rep.tokens_per_second = double(rep.tokens_added) / std::max(1e-9, rep.timings_ms["total"] / 1000.0);
  rep.peak_rss_mb = peak_rss_mb();
  return rep;
}

Result<IngestReport> Engine::merge_shards(const std::vector<std::string>& shard_dirs, const std::string& store_dir) {
  const auto t0 = Clock::now();
  if (shard_dirs.empty()) return make_error(errc::invalid_argument, "merge: no shard stores given");
  auto first = storage::StoreReader::open(shard_dirs.front());
  if (!first) return tl::unexpected(first.error());
  if (auto r = first->check_model(impl_->model->fingerprint(), first->meta().retrieval_layer); !r) {
    return tl::unexpected(r.error());
  }
  std::vector<fs::path> paths(shard_dirs.begin(), shard_dirs.end());
  storage::MergeOptions mo;
  mo.write.zstd_level = impl_->cfg.store.compression_level;
  mo.same_config = same_key_settings;
  mo.merge_notes = merged_notes;
  auto merged = storage::merge_stores(store_dir, paths, mo);
  if (!merged) return tl::unexpected(merged.error());
  IngestReport rep;
  rep.store_dir = store_dir;
  rep.layer = first->meta().retrieval_layer;
  rep.tokens_added = rep.total_tokens = merged->n_tokens;
  rep.segments_added = merged->n_segments;
  rep.raw_key_bytes = merged->raw_key_bytes;
  rep.stored_key_bytes = merged->stored_key_bytes;
  rep.key_compression_ratio = merged->key_compression_ratio();
  rep.timings_ms["merge"] = rep.timings_ms["total"] = ms_since(t0);
  rep.peak_rss_mb = peak_rss_mb();
  return rep;
}

}  // namespace ilre
