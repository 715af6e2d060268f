#include "ilre/engine.h"

#include <spdlog/spdlog.h>
#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>

#include "api/engine_impl.h"
#include "api/text_stream.h"
#include "engine/executor.h"
#include "engine/memory_budget.h"
#include "engine/metrics.h"
#include "engine/pipeline.h"
#include "model/tokenizer/chat_template.h"
#include "model/model.h"
#include "model/session.h"
#include "model/gguf/model_path.h"
#include "retrieval/configure.h"
#include "retrieval/prompt.h"
#include "retrieval/lexical.h"
#include "stages/decode.h"
#include "stages/document_state.h"
#include "stages/pool.h"
#include "stages/prefill.h"
#include "stages/read.h"
#include "stages/recall.h"
#include "stages/score.h"
#include "stages/spill.h"
#include "stages/tokenize.h"
#include "storage/store_reader.h"
#include "storage/store_writer.h"

namespace fs = std::filesystem;

namespace ilre {

CancelHandle::CancelHandle() : state_(std::make_shared<State>()) {}
void CancelHandle::cancel(std::string reason) const { state_->source.cancel(Error{errc::cancelled, std::move(reason)}); }
bool CancelHandle::cancelled() const { return state_->source.cancelled(); }

double peak_rss_mb() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return 0.0;
}

namespace {

// configs/models/<model file stem>.yaml written by `ilre calibrate`: {layer: N, ...}.
std::optional<int32_t> calibrated_layer(const std::string& model_path) {
  const std::string stem = fs::path(model_path).stem().string();
  std::vector<fs::path> dirs;
  for (const fs::path& root : model::search_roots()) dirs.push_back(root / "configs" / "models");
  dirs.push_back(fs::path(model_path).parent_path() / ".." / "configs" / "models");
  for (const fs::path& dir : dirs) {
    const fs::path p = dir / (stem + ".yaml");
    if (!fs::exists(p)) continue;
    try {
      const YAML::Node n = YAML::LoadFile(p.string());
      if (n["layer"]) return n["layer"].as<int32_t>();
    } catch (const YAML::Exception& e) {
      spdlog::warn("ignoring {}: {}", p.string(), e.what());
    }
  }
  return std::nullopt;
}

std::map<std::string, double> stage_timings(const engine::MetricsSnapshot& m) {
  std::map<std::string, double> out;
  for (const auto& s : m.stages) out[s.stage] = static_cast<double>(s.busy_ns) / 1e6;
  return out;
}

uint64_t items_out(const engine::MetricsSnapshot& m, std::string_view stage) {
  for (const auto& s : m.stages) {
    if (s.stage == stage) return s.items_out;
  }
  return 0;
}

// Runs a pipeline to completion, reporting progress every 200 ms.
Result<void> run_with_progress(engine::RunHandle& run, const std::function<void(const engine::MetricsSnapshot&)>& tick) {
  for (;;) {
    if (auto done = run.wait_for(std::chrono::milliseconds(200))) {
      if (tick) tick(run.metrics());
      return *done;
    }
    if (tick) tick(run.metrics());
  }
}

// The store's document state (streaming caches and, for an open stream, its tail), read and unpacked.
// recall.policy = hybrid: the lexical prior of every stored token for this question, from the token frames
// alone (the keys are not read).
std::vector<float> lexical_prior(const storage::StoreReader& reader, const model::Vocab& vocab, const std::string& question,
                                 int64_t window) {
  std::vector<int32_t> doc;
  doc.reserve(static_cast<size_t>(reader.n_tokens()));
  for (size_t i = 0; i < reader.segments().size(); ++i) {
    auto ids = reader.segment_tokens(i);
    if (!ids) throw Exception(ids.error());
    doc.insert(doc.end(), ids->begin(), ids->end());
  }
  retrieval::WordMap words([&vocab](int32_t id) { return vocab.token_to_piece(id); });
  return retrieval::lexical_scores(doc, vocab.tokenize(question, {.add_special = false}), words, {.window = window});
}

Result<stages::DocumentState> read_document_state(const storage::StoreReader& reader) {
  auto blob = reader.state();
  if (!blob) return tl::unexpected(blob.error());
  return stages::unpack_document_state(*blob);
}

// A consistent view of a store that may be growing: its manifest and the state file that manifest names.
// An append running in another thread or process replaces the state file after switching the manifest,
// so the state of an older manifest can vanish between the two reads; then the newer manifest is read.
// Segments are immutable once listed, so the keys of the snapshot stay readable.
// A shard holds part of a document: asking it would answer from that part alone.
Result<void> check_whole_document(const storage::StoreReader& reader) {
  const int64_t first = reader.meta().first_pos;
  if (first == 0) return {};
  return make_error(errc::invalid_argument, "store " + reader.dir().string() + " is one shard (tokens [" +
                                                std::to_string(first) + ", " + std::to_string(first + reader.n_tokens()) +
                                                ")) of a sharded ingest: merge the shards first (ilre merge)");
}

Result<std::pair<storage::StoreReader, std::vector<uint8_t>>> open_snapshot(const std::string& store_dir) {
  constexpr int kAttempts = 8;
  for (int attempt = 1;; ++attempt) {
    auto reader = storage::StoreReader::open(store_dir);
    if (!reader) {
      if (reader.error().code == errc::io_failed && attempt < kAttempts && fs::exists(fs::path(store_dir) / "manifest.json")) continue;
      return tl::unexpected(reader.error());
    }
    if (auto whole = check_whole_document(*reader); !whole) return tl::unexpected(whole.error());
    if (!reader->has_state()) return std::pair{std::move(*reader), std::vector<uint8_t>{}};
    auto state = reader->state();
    if (state) return std::pair{std::move(*reader), std::move(*state)};
    if (state.error().code != errc::io_failed || attempt >= kAttempts) return tl::unexpected(state.error());
  }
}

// The last sink of an ask: hands each piece of the answer to the caller (whole UTF-8 characters) and keeps
// the text.
class AnswerSink {
 public:
  using In = stages::AnswerPiece;
  static constexpr std::string_view kName = "answer";
  AnswerSink(std::function<bool(std::string_view)> on_token, Clock::time_point t0) : on_token_(std::move(on_token)), t0_(t0) {}
  Result<void> process(stages::AnswerPiece&& piece) {
    if (ttft_ms_ < 0) ttft_ms_ = ms_since(t0_);
    ++n_;
    return deliver(utf8_.feed(piece.text));
  }
  Result<void> finish() { return deliver(utf8_.flush()); }
  std::string text_;
  int64_t n_ = 0;
  double ttft_ms_ = -1;
  bool stopped_ = false;

 private:
  Result<void> deliver(const std::string& text) {
    if (text.empty()) return {};
    text_ += text;
    if (on_token_ && !on_token_(text)) {
      stopped_ = true;
      return make_error(errc::cancelled, "generation stopped by the caller");
    }
    return {};
  }
  std::function<bool(std::string_view)> on_token_;
  Clock::time_point t0_;
  api::Utf8Joiner utf8_;
};

model::SamplerParams sampler_params(const DecodeConfig& d, const SamplingOverrides& o) {
  return {.temperature = o.temperature.value_or(d.temperature), .top_k = o.top_k.value_or(d.top_k),
          .top_p = o.top_p.value_or(d.top_p), .seed = o.seed.value_or(d.seed)};
}

Result<void> check_sampling(const SamplingOverrides& o) {
  if (o.max_tokens && *o.max_tokens < 0) return make_error(errc::invalid_argument, "max_tokens must be >= 0");
  if (o.temperature && !(*o.temperature >= 0.0f && *o.temperature <= 100.0f)) {
    return make_error(errc::invalid_argument, "temperature must be in [0, 100]");
  }
  if (o.top_p && !(*o.top_p > 0.0f && *o.top_p <= 1.0f)) return make_error(errc::invalid_argument, "top_p must be in (0, 1]");
  if (o.top_k && *o.top_k < 0) return make_error(errc::invalid_argument, "top_k must be >= 0");
  return {};
}

}  // namespace


Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() = default;

Result<std::shared_ptr<Engine>> Engine::open(Config config) {
  if (auto v = config.validate(); !v) return tl::unexpected(v.error());
  return catch_to_result([&]() -> std::shared_ptr<Engine> {
    auto impl = std::make_unique<Impl>();
    impl->cfg = std::move(config);
    const std::string path = model::resolve_model_path(
        impl->cfg.model.path.empty() ? std::nullopt : std::optional<std::string>(impl->cfg.model.path));
    impl->model = model::Model::load(path);
    const auto& hp = impl->model->hparams();
    if (impl->cfg.prefill.layer >= 0) {
      impl->layer = impl->cfg.prefill.layer;
    } else if (auto l = calibrated_layer(path)) {
      impl->layer = *l;
    } else {
      impl->layer = static_cast<int32_t>(hp.n_layer / 4);  // the method doc's fallback (paper: 3 of 32)
    }
    if (impl->layer < 0 || impl->layer >= hp.n_layer) {
      throw Exception(errc::invalid_argument, "prefill.layer " + std::to_string(impl->layer) + " is outside 0.." +
                                                  std::to_string(hp.n_layer - 1));
    }
    impl->pool = std::make_unique<model::ComputePool>(impl->cfg.model.threads);
    impl->executor = std::make_unique<engine::ThreadPoolExecutor>(impl->cfg.pipeline.executor_threads);
    impl->budget = std::make_unique<engine::MemoryBudget>(static_cast<size_t>(impl->cfg.pipeline.memory_budget_mb) << 20);
    spdlog::info("model {} ({}), retrieval layer {}", impl->model->name(), hp.summary(), impl->layer);
    return std::shared_ptr<Engine>(new Engine(std::move(impl)));
  });
}

const Config& Engine::config() const { return impl_->cfg; }
std::string Engine::model_name() const { return impl_->model->name(); }
int32_t Engine::retrieval_layer() const { return impl_->layer; }

int64_t Engine::recall_budget(int64_t n_query) const { return impl_->budget_for(n_query, impl_->cfg.decode.max_tokens); }

ModelInfo Engine::model_info() const {
  const model::Model& m = *impl_->model;
  const auto& hp = m.hparams();
  ModelInfo info;
  info.name = m.name();
  info.file = m.path();
  info.architecture = hp.arch_name;
  info.fingerprint = m.fingerprint();
  info.context_length = hp.n_ctx_train;
  info.vocab_size = hp.n_vocab;
  info.n_layer = static_cast<int32_t>(hp.n_layer);
  info.retrieval_layer = impl_->layer;
  try {
    info.chat_template = model::chat_template_for(m.file(), hp).from_metadata;
  } catch (const Exception&) {
    info.chat_template = false;
  }
  return info;
}

std::vector<StageStats> Engine::stage_stats() const {
  std::map<std::string, StageStats> all;
  {
    std::lock_guard<std::mutex> lock(impl_->finished_mutex);
    all = impl_->finished;
  }
  for (const auto& st : impl_->registry.snapshot().stages) {
    StageStats& t = all[st.stage];
    t.stage = st.stage;
    t.queue_depth += st.queue_depth;
    t.running += 1;
  }
  std::vector<StageStats> out;
  for (auto& [name, t] : all) out.push_back(std::move(t));
  return out;
}

Result<std::vector<int32_t>> Engine::tokenize(std::string_view text, bool parse_special) const {
  return catch_to_result([&] {
    return impl_->model->vocab().tokenize(text, {.add_special = true, .parse_special = parse_special});
  });
}

Result<std::string> Engine::chat_prompt(const std::vector<ChatMessage>& messages) const {
  if (messages.empty()) return make_error(errc::invalid_argument, "the conversation has no messages");
  return catch_to_result([&] {
    const model::ChatTemplate tmpl = model::chat_template_for(impl_->model->file(), impl_->model->hparams());
    std::vector<model::ChatMessage> msgs;
    msgs.reserve(messages.size());
    for (const ChatMessage& m : messages) msgs.push_back({m.role, m.content});
    return tmpl.apply(msgs);
  });
}

Result<Completion> Engine::complete(const std::vector<int32_t>& prompt, GenerateOptions options) {
  return impl_->complete(prompt, options);
}

Result<IngestReport> Engine::ingest_file(const std::string& path, const std::string& store_dir, IngestOptions options) {
  if (options.shards > 1 || options.shard_count > 0) return impl_->ingest_sharded(path, store_dir, options);
  auto source = stages::open_file_source(path);
  if (!source) return tl::unexpected(source.error());
  int64_t total = -1;
  std::error_code ec;
  if (path != "-" && fs::is_regular_file(path, ec)) {
    total = static_cast<int64_t>(fs::file_size(path, ec));
    if (total == 0) return make_error(errc::invalid_argument, "document '" + path + "' is empty");
  }
  return impl_->ingest(std::move(*source), total, store_dir, options);
}

Result<IngestReport> Engine::ingest_text(std::string text, const std::string& store_dir, IngestOptions options) {
  if (text.empty()) return make_error(errc::invalid_argument, "document is empty");
  const auto total = static_cast<int64_t>(text.size());
  return impl_->ingest(stages::memory_source(std::move(text)), total, store_dir, options);
}

Result<IngestReport> Engine::ingest(std::istream& document, const std::string& store_dir, IngestOptions options) {
  return impl_->ingest(stages::stream_source(document, "<stream>"), -1, store_dir, options);
}

Result<Store> Engine::open_store(const std::string& store_dir) const {
  auto reader = storage::StoreReader::open(store_dir);
  if (!reader) return tl::unexpected(reader.error());
  if (auto whole = check_whole_document(*reader); !whole) return tl::unexpected(whole.error());
  const storage::StoreMeta& meta = reader->meta();
  if (auto r = reader->check_model(impl_->model->fingerprint(), meta.retrieval_layer); !r) return tl::unexpected(r.error());
  Store s;
  s.dir = store_dir;
  s.model_name = meta.model_name;
  s.model_fingerprint = meta.model_fingerprint;
  s.layer = meta.retrieval_layer;
  s.tokens = reader->n_tokens();
  s.segments = static_cast<int64_t>(reader->segments().size());
  for (const auto& seg : reader->segments()) s.stored_bytes += seg.stored_bytes;
  s.resumable = reader->state_info().has_value();
  if (s.resumable) {
    auto doc = read_document_state(*reader);
    if (!doc) return tl::unexpected(doc.error());
    s.open = doc->tail.has_value();
    s.pending_tokens = doc->tail ? static_cast<int64_t>(doc->tail->tokens.size()) : 0;
  }
  if (meta.notes.is_object()) s.bytes = meta.notes.value("document_bytes", uint64_t{0});
  s.created_at = reader->created_at();
  s.updated_at = reader->updated_at();
  return s;
}

Result<Answer> Engine::ask(const Store& store, const std::string& question, AskOptions options) {
  return ask(store.dir, question, std::move(options));
}

struct DocumentStream::Impl {
  std::shared_ptr<Engine> engine;  // keeps the engine (and so `core`) alive while the stream is
  Engine::Impl* core = nullptr;
  std::string dir;
  std::mutex mutex;  // appends of one stream run one after another
  bool closed = false;

  Result<IngestReport> run(std::unique_ptr<stages::ByteSource> source, int64_t total, IngestOptions options, bool keep_open) {
    std::lock_guard<std::mutex> lock(mutex);
    options.append = true;
    options.keep_open = keep_open;
    auto report = core->ingest(std::move(source), total, dir, options);
    if (report) closed = !keep_open;
    return report;
  }
};

DocumentStream::DocumentStream(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
DocumentStream::~DocumentStream() = default;
const std::string& DocumentStream::dir() const { return impl_->dir; }

bool DocumentStream::closed() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->closed;
}

Result<IngestReport> DocumentStream::append(std::string_view text, IngestOptions options) {
  if (text.empty()) return make_error(errc::invalid_argument, "nothing to append: the text is empty");
  return impl_->run(stages::memory_source(std::string(text)), static_cast<int64_t>(text.size()), std::move(options), true);
}

Result<IngestReport> DocumentStream::append(std::istream& text, IngestOptions options) {
  return impl_->run(stages::stream_source(text, "<stream>"), -1, std::move(options), true);
}

namespace {
class ReaderSource final : public stages::ByteSource {
 public:
  explicit ReaderSource(TextReader reader) : reader_(std::move(reader)) {}
  Result<int64_t> read(char* buf, int64_t max) override { return reader_(buf, max); }
  std::string describe() const override { return "<reader>"; }

 private:
  TextReader reader_;
};
}  // namespace

Result<IngestReport> DocumentStream::append(TextReader reader, IngestOptions options) {
  if (!reader) return make_error(errc::invalid_argument, "append needs a reader");
  return impl_->run(std::make_unique<ReaderSource>(std::move(reader)), -1, std::move(options), true);
}

Result<IngestReport> DocumentStream::close(IngestOptions options) {
  return impl_->run(stages::memory_source(std::string()), 0, std::move(options), false);
}

Result<std::unique_ptr<DocumentStream>> Engine::open_stream(const std::string& store_dir) {
  std::error_code ec;
  if (!fs::exists(fs::path(store_dir) / "manifest.json", ec)) {
    if (auto c = impl_->create_store(store_dir); !c) return tl::unexpected(c.error());
  } else if (auto s = open_store(store_dir); !s) {
    return tl::unexpected(s.error());
  }
  auto impl = std::make_unique<DocumentStream::Impl>();
  impl->engine = shared_from_this();
  impl->core = impl_.get();
  impl->dir = store_dir;
  return std::make_unique<DocumentStream>(std::move(impl));
}

Result<IngestReport> Engine::Impl::ingest(std::unique_ptr<stages::ByteSource> source, int64_t total_bytes,
                                          const std::string& store_dir, IngestOptions& options, const ShardRun* shard) {
  const auto t0 = Clock::now();
  storage::WriteOptions wo;
  wo.zstd_level = cfg.store.compression_level;
  std::vector<uint8_t> state;
  std::optional<stages::StreamTail> tail;
  int32_t at_layer = layer;
  std::optional<storage::StoreWriter> writer;
  bool created = false;
  if (options.append) {
    auto reader = storage::StoreReader::open(store_dir);
    if (!reader) return tl::unexpected(reader.error());
    if (auto whole = check_whole_document(*reader); !whole) return tl::unexpected(whole.error());
    at_layer = reader->meta().retrieval_layer;
    if (cfg.prefill.layer >= 0 && cfg.prefill.layer != at_layer) {
      return make_error(errc::model_mismatch, "store '" + store_dir + "' was made at layer " + std::to_string(at_layer) +
                                                  ", the config asks for " + std::to_string(cfg.prefill.layer));
    }
    if (auto r = reader->check_model(model->fingerprint(), at_layer); !r) return tl::unexpected(r.error());
    // The writer lock first, then the state: another appender cannot move the store between the two.
    auto w = storage::StoreWriter::open_append(store_dir, model->fingerprint(), at_layer, wo);
    if (!w) return tl::unexpected(w.error());
    writer.emplace(std::move(*w));
    reader = storage::StoreReader::open(store_dir);
    if (!reader) return tl::unexpected(reader.error());
    if (reader->n_tokens() > 0 && !reader->has_state()) {
      return make_error(errc::invalid_argument, "store '" + store_dir + "' has keys but no streaming state to continue from");
    }
    // An open stream may have a state (its tail) before its first whole chunk of keys.
    if (reader->has_state()) {
      auto doc = read_document_state(*reader);
      if (!doc) return tl::unexpected(doc.error());
      if (reader->n_tokens() > 0) state = std::move(doc->prefill);
      tail = std::move(doc->tail);
    }
  } else {
    storage::StoreMeta meta = store_meta();
    if (shard) meta.first_pos = shard->range.begin;
    auto w = storage::StoreWriter::create(store_dir, std::move(meta), wo);
    if (!w) return tl::unexpected(w.error());
    writer.emplace(std::move(*w));
    created = true;
  }
  if (options.atomic) writer->begin_transaction();
  const int64_t start_tokens = shard ? 0 : writer->end_pos();  // a shard's tokenizer starts at the document's start
  const stages::PrefillSettings settings = prefill_settings(at_layer);
  const int64_t segment = segment_tokens(settings);

  model::ComputePool& compute = shard && shard->pool ? *shard->pool : *pool;
  engine::Pipeline p(run_name("ingest"), pipeline_options(options.cancel));
  auto read = p.emplace<stages::ReadStage>(std::move(source), cfg.pipeline.read_chunk_bytes);
  const bool resumes_open_stream = tail.has_value();
  const bool starts_document = start_tokens == 0 && !resumes_open_stream;
  auto tok = p.emplace<stages::TokenizeStage>(model->vocab_ptr(), settings.chunk, start_tokens, starts_document,
                                              std::move(tail), options.keep_open);
  auto pre = shard ? p.emplace<stages::PrefillStage>(*model, compute, settings, segment, shard->range)
                   : p.emplace<stages::PrefillStage>(*model, compute, settings, segment, std::move(state));
  auto spill = p.emplace<stages::SpillStage>(*writer, 2 * segment);
  p.connect(read, tok);
  p.connect(tok, pre);
  p.connect(pre, spill);
  engine::RunHandle run = std::move(p).run(shard && shard->executor ? *shard->executor : *executor);
  auto progress = [&](const engine::MetricsSnapshot& m) {
    if (!options.on_progress) return;
    Progress pr;
    pr.phase = "ingest";
    pr.processed = static_cast<int64_t>(items_out(m, "read"));
    pr.total = total_bytes;
    pr.tokens = static_cast<int64_t>(items_out(m, "prefill"));
    pr.elapsed_ms = ms_since(t0);
    options.on_progress(pr);
  };
  const Result<void> result = run_with_progress(run, progress);
  const engine::MetricsSnapshot metrics = run.metrics();
  add_finished(metrics);

  IngestReport rep;
  rep.store_dir = store_dir;
  rep.layer = at_layer;
  rep.bytes_read = static_cast<uint64_t>(read.stage().bytes_read());
  rep.replaced_bytes = tok.stage().replaced_bytes();
  const stages::SpillTotals& totals = spill.stage().totals();
  rep.tokens_added = totals.tokens;
  rep.segments_added = totals.segments;
  rep.total_tokens = writer->end_pos();
  rep.raw_key_bytes = totals.raw_key_bytes;
  rep.stored_key_bytes = totals.stored_key_bytes;
  rep.key_compression_ratio = totals.stored_key_bytes ? double(totals.raw_key_bytes) / double(totals.stored_key_bytes) : 0.0;
  rep.timings_ms = stage_timings(metrics);
  rep.timings_ms["total"] = ms_since(t0);
  rep.tokens_per_second = rep.tokens_added / std::max(1e-9, rep.timings_ms["total"] / 1000.0);
  rep.peak_rss_mb = peak_rss_mb();

  const nlohmann::json& before = writer->meta().notes;
  const uint64_t bytes_before = before.is_object() ? before.value("document_bytes", uint64_t{0}) : 0;
  nlohmann::json notes = {{"complete", result.has_value() && spill.stage().saw_end()},
                          {"document_bytes", bytes_before + rep.bytes_read},
                          {"replaced_utf8_bytes", rep.replaced_bytes},
                          {"forced_tokenizer_cuts", tok.stage().forced_cuts()},
                          {"nonfinite_keys", totals.nonfinite_keys}};
  if (shard) {
    notes["shard"] = {{"index", shard->index}, {"count", shard->count}, {"document_tokens", shard->document_tokens}};
  }
  if (auto r = writer->set_notes(notes); !r) spdlog::warn("could not record notes: {}", r.error().what());
  if (!result) {
    if (options.atomic) {
      writer->rollback();
      spdlog::warn("ingest stopped: store '{}' is left as it was ({} tokens)", store_dir, writer->n_tokens());
    } else {
      spdlog::warn("ingest stopped: store '{}' keeps {} tokens in complete segments", store_dir, writer->n_tokens());
    }
    return tl::unexpected(result.error());
  }
  // Closing an open stream reads nothing and is fine: it tokenises and stores the held-back tail.
  if (rep.bytes_read == 0 && !resumes_open_stream) {
    writer.reset();
    if (created) fs::remove_all(store_dir);
    return make_error(errc::invalid_argument, "document is empty (0 bytes read)");
  }
  if (auto c = writer->commit(); !c) return tl::unexpected(c.error());
  return rep;
}

Result<Answer> Engine::ask(const std::string& store_dir, const std::string& question, AskOptions options) {
  return impl_->ask(store_dir, question, options);
}

Result<Answer> Engine::Impl::ask(const std::string& store_dir, const std::string& question, AskOptions& options) {
  const auto t0 = Clock::now();
  if (question.find_first_not_of(" \t\r\n") == std::string::npos) {
    return make_error(errc::invalid_argument, "the question is empty");
  }
  if (auto v = check_sampling(options.sampling); !v) return tl::unexpected(v.error());
  if (options.budget && *options.budget < 1) return make_error(errc::invalid_argument, "the recall budget must be >= 1 token");
  const int32_t max_tokens = options.sampling.max_tokens.value_or(cfg.decode.max_tokens);
  auto snapshot = open_snapshot(store_dir);
  if (!snapshot) return tl::unexpected(snapshot.error());
  std::optional<storage::StoreReader> reader(std::move(snapshot->first));
  const int32_t at_layer = reader->meta().retrieval_layer;
  if (cfg.prefill.layer >= 0 && cfg.prefill.layer != at_layer) {
    return make_error(errc::model_mismatch, "store '" + store_dir + "' was made at layer " + std::to_string(at_layer) +
                                                ", the config asks for " + std::to_string(cfg.prefill.layer));
  }
  if (auto r = reader->check_model(model->fingerprint(), at_layer); !r) return tl::unexpected(r.error());
  if (reader->n_tokens() == 0) return make_error(errc::invalid_argument, "store '" + store_dir + "' holds no tokens");
  if (snapshot->second.empty()) {
    return make_error(errc::invalid_argument, "store '" + store_dir + "' has no streaming state to encode the question with");
  }
  auto doc_state = stages::unpack_document_state(snapshot->second);
  if (!doc_state) return tl::unexpected(doc_state.error());
  const std::vector<uint8_t>* state = &doc_state->prefill;

  return catch_to_result([&]() -> Answer {
    const auto& hp = model->hparams();
    const nlohmann::json& made = reader->meta().config;
    stages::PrefillSettings settings{.layer = at_layer,
                                     .sink = made.value("sink", cfg.prefill.sink),
                                     .window = made.value("window", cfg.prefill.window),
                                     .chunk = made.value("chunk", cfg.prefill.chunk),
                                     .numerics = numerics_of(made.value("numerics", cfg.decode.numerics)),
                                     // Stores from before the setting streamed at absolute positions.
                                     .positions = stages::prefill_positions_from_name(made.value("positions", "absolute"))
                                                      .value_or(stages::PrefillPositions::absolute)};
    stages::StreamingPrefill prefill(*model, *pool, settings, *state);
    if (prefill.next_position() != reader->n_tokens()) {
      spdlog::warn("store '{}' is incomplete: its state is at token {} of {}", store_dir, prefill.next_position(),
                   reader->n_tokens());
    }
    retrieval::QueryPrompt query_prompt = retrieval::query_prompt(cfg, *model, question);
    const std::vector<model::TokenId>& query = query_prompt.query;
    const int64_t n_context = reader->n_tokens();
    const int64_t budget =
        options.budget.value_or(budget_for(static_cast<int64_t>(query.size() + query_prompt.lead.size()), max_tokens));

    auto encode_t0 = Clock::now();
    std::vector<float> q = prefill.encode_query(query);
    model::Forward rope_forward(*model, *pool);
    stages::ScoreStage::KeyTransform key_transform;
    if (cfg.scoring.positions == "absolute") {
      std::vector<int32_t> qpos(query.size());
      for (size_t i = 0; i < qpos.size(); ++i) qpos[i] = static_cast<int32_t>(prefill.next_position() + static_cast<int64_t>(i));
      rope_forward.apply_rope(at_layer, q.data(), hp.n_head, qpos);
      key_transform = [&rope_forward, at_layer, &hp](int64_t first, int64_t n, float* keys) {
        std::vector<int32_t> pos(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) pos[static_cast<size_t>(i)] = static_cast<int32_t>(first + i);
        rope_forward.apply_rope(at_layer, keys, hp.n_head_kv, pos);
      };
    }
    const double encode_ms = ms_since(encode_t0);
    const auto lexical_t0 = Clock::now();
    std::vector<float> lexical;  // recall.policy = hybrid: the prior of every stored token (4 bytes each)
    stages::ScoreStage::ScoreTransform score_transform;
    if (cfg.recall.policy == "hybrid") {
      lexical = lexical_prior(*reader, model->vocab(), question, cfg.recall.lexical_window);
      score_transform = [&lexical, w = cfg.recall.lexical_weight](int64_t first, std::span<float> scores) {
        retrieval::fuse_lexical(scores, std::span<const float>(lexical).subspan(static_cast<size_t>(first)), w);
      };
    }
    const double lexical_ms = ms_since(lexical_t0);
    const retrieval::ScoreConfig score_cfg = retrieval::score_config(cfg, hp);
    const auto [row0, row1] = retrieval::scoring_rows(cfg, query_prompt);  // scoring.query
    const int64_t q_width = hp.n_head * hp.head_dim_k;
    retrieval::QueryScorer scorer(std::span<const float>(q).subspan(static_cast<size_t>(row0 * q_width),
                                                                    static_cast<size_t>((row1 - row0) * q_width)),
                                  row1 - row0, {hp.n_head, hp.n_head_kv, hp.head_dim_k}, score_cfg);

    const retrieval::SelectionConfig sel = retrieval::selection_config(cfg, budget, settings.sink);
    const bool compressed = n_context > budget;
    if (!compressed) {
      spdlog::info("the document ({} tokens) fits the recall budget ({}): no compression", n_context, budget);
    }

    const model::SamplerParams sp = sampler_params(cfg.decode, options.sampling);
    const model::LongContext long_context = stages::long_context_of(cfg.decode);
    engine::Pipeline p(run_name("ask"), pipeline_options(options.cancel));
    auto score = p.emplace<stages::ScoreStage>(*reader, std::move(scorer), key_transform, score_transform, pool.get());
    auto pool_stage = p.emplace<stages::PoolStage>(sel);
    auto recall = p.emplace<stages::RecallStage>(*reader, query_prompt,
                                                 cfg.decode.positions == "original" ? stages::PromptPositions::original
                                                                                    : stages::PromptPositions::contiguous,
                                                 model->vocab().add_bos() ? model->vocab().bos() : -1,
                                                 model::sequence_capacity(long_context, hp.n_ctx_train) - max_tokens);
    auto decode = p.emplace<stages::DecodeStage>(*model, *pool, numerics_of(cfg.decode.numerics),
                                                 kv_type_of(cfg.decode.kv_type), settings.chunk,
                                                 max_tokens, sp, cfg.decode.stop_at_newline, long_context);
    auto sink = p.emplace<AnswerSink>(options.on_token, t0);
    p.connect(score, pool_stage);
    p.connect(pool_stage, recall);
    p.connect(recall, decode);
    p.connect(decode, sink);
    engine::RunHandle run = std::move(p).run(*executor);
    auto progress = [&](const engine::MetricsSnapshot& m) {
      if (!options.on_progress) return;
      Progress pr;
      const uint64_t scored = items_out(m, "score");
      const uint64_t generated = items_out(m, "decode");
      pr.phase = generated > 0 ? "generate" : (scored >= static_cast<uint64_t>(n_context) ? "prefill-prompt" : "score");
      pr.processed = generated > 0 ? static_cast<int64_t>(generated) : static_cast<int64_t>(scored);
      pr.total = generated > 0 ? max_tokens : n_context;
      pr.elapsed_ms = ms_since(t0);
      options.on_progress(pr);
    };
    Result<void> result = run_with_progress(run, progress);
    const engine::MetricsSnapshot metrics = run.metrics();
    add_finished(metrics);
    if (!result && !sink.stage().stopped_) throw Exception(result.error());

    Answer a;
    a.text = sink.stage().text_;
    a.context_tokens = n_context;
    a.recalled = recall.stage().n_recalled();
    a.spans = recall.stage().spans();
    a.compressed = compressed;
    a.prompt_tokens = decode.stage().totals().prompt_tokens;
    a.generated_tokens = sink.stage().n_;
    const stages::DecodeTotals& dt = decode.stage().totals();
    a.finish_reason = dt.stopped_at_eog || dt.stopped_at_newline || a.generated_tokens < max_tokens ? "stop" : "length";
    a.dca = dt.dca;
    a.layer = at_layer;
    a.timings_ms = stage_timings(metrics);
    a.timings_ms["encode_query"] = encode_ms;
    if (!lexical.empty()) a.timings_ms["lexical"] = lexical_ms;
    a.timings_ms["ttft"] = sink.stage().ttft_ms_;
    a.timings_ms["total"] = ms_since(t0);
    a.peak_rss_mb = peak_rss_mb();
    return a;
  });
}

Result<Completion> Engine::Impl::complete(const std::vector<int32_t>& prompt, GenerateOptions& options) {
  const auto t0 = Clock::now();
  if (auto v = check_sampling(options.sampling); !v) return tl::unexpected(v.error());
  const auto& hp = model->hparams();
  const auto n_prompt = static_cast<int64_t>(prompt.size());
  if (n_prompt == 0) return make_error(errc::invalid_argument, "the prompt is empty");
  // Past the trained context the sequence runs with dual chunk attention (decode.dca auto|on) up to
  // decode.context or 8x the trained context; with decode.dca=off it stops at decode.context or the trained one.
  const model::LongContext long_context = stages::long_context_of(cfg.decode);
  const int64_t capacity = model::sequence_capacity(long_context, hp.n_ctx_train);
  if (n_prompt >= capacity) {
    return make_error(errc::out_of_range, "the prompt has " + std::to_string(n_prompt) + " tokens; the most a sequence may hold is " +
                                              std::to_string(capacity) + " (the model was trained on " +
                                              std::to_string(hp.n_ctx_train) + "; see decode.dca and decode.context)");
  }
  for (int32_t id : prompt) {
    if (id < 0 || id >= hp.n_vocab) return make_error(errc::out_of_range, "token id " + std::to_string(id) + " is not in the vocabulary");
  }
  // Without a max_tokens a prompt inside the trained context may fill it, not more: an unbounded answer
  // must not switch a sequence that fits to DCA.
  const int64_t limit = n_prompt < hp.n_ctx_train && !options.sampling.max_tokens ? std::min(capacity, hp.n_ctx_train) : capacity;
  const int64_t room = limit - n_prompt;
  const int64_t max_tokens = std::min<int64_t>(room, options.sampling.max_tokens.value_or(static_cast<int32_t>(room)));
  const engine::CancelToken cancel = options.cancel.state()->source.token();
  return catch_to_result([&]() -> Completion {
    const int64_t batch = std::max<int64_t>(1, cfg.prefill.chunk);
    model::Session session(*model, *pool, batch, numerics_of(cfg.decode.numerics), kv_type_of(cfg.decode.kv_type));
    session.configure(long_context, n_prompt + max_tokens - 1);
    std::vector<float> logits;
    // The prompt one batch at a time, so a cancel (a client that went away) stops a long prompt early.
    for (int64_t at = 0; at < n_prompt; at += batch) {
      if (auto c = cancel.check(); !c) throw Exception(c.error());
      const int64_t n = std::min(batch, n_prompt - at);
      session.eval(std::span<const int32_t>(prompt).subspan(static_cast<size_t>(at), static_cast<size_t>(n)), logits);
      if (options.on_progress) {
        options.on_progress(Progress{.phase = "prefill-prompt", .processed = at + n, .total = n_prompt, .tokens = at + n,
                                     .elapsed_ms = ms_since(t0)});
      }
    }
    Completion c;
    c.prompt_tokens = n_prompt;
    c.dca = session.dca().has_value();
    c.timings_ms["prompt"] = ms_since(t0);
    const auto gen_t0 = Clock::now();
    model::Sampler sampler(sampler_params(cfg.decode, options.sampling));
    api::Utf8Joiner utf8;
    api::StopMatcher stops(options.stop);
    bool client_stopped = false;
    auto deliver = [&](const std::string& text) {
      if (text.empty() || client_stopped) return;
      if (c.timings_ms.count("ttft") == 0) c.timings_ms["ttft"] = ms_since(t0);
      c.text += text;
      if (options.on_token && !options.on_token(text)) client_stopped = true;
    };
    c.finish_reason = "length";
    while (c.generated_tokens < max_tokens) {
      if (auto r = cancel.check(); !r) throw Exception(r.error());
      const model::TokenId next = sampler.sample(logits);
      if (model->vocab().is_eog(next)) {
        c.finish_reason = "stop";
        break;
      }
      ++c.generated_tokens;
      deliver(stops.feed(utf8.feed(model->vocab().token_to_piece(next))));
      if (stops.stopped()) {
        c.finish_reason = "stop";
        break;
      }
      if (client_stopped) {
        c.finish_reason = "stop";  // the caller said why (a stop string of its own, a client that left)
        break;
      }
      if (c.generated_tokens < max_tokens) session.eval(std::span<const int32_t>(&next, 1), logits);
    }
    if (!stops.stopped()) deliver(stops.feed(utf8.flush()) + stops.flush());
    c.timings_ms["generate"] = ms_since(gen_t0);
    c.timings_ms["total"] = ms_since(t0);
    if (c.timings_ms.count("ttft") == 0) c.timings_ms["ttft"] = c.timings_ms["total"];
    return c;
  });
}

}  // namespace ilre
