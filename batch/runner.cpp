#include "batch/runner.h"

#include <sched.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "api/json.h"
#include "batch/results.h"
#include "ilre/openai.h"
#include "storage/manifest.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace ilre::batch {
namespace {

using Clock = std::chrono::steady_clock;

// Document text goes to the store in slices, each appended all-or-nothing and recorded with the bytes
// it consumed, so a killed run resumes at the last slice boundary with exactly the same tokens.
constexpr size_t kSliceBytes = 256 << 10;

std::string job_key(const std::string& document, const std::string& question) { return document + '\x1f' + question; }

std::string key_of_job_line(const json& j) {
  if (!j.is_object() || !j.contains("document") || !j.contains("question")) return {};
  if (!j["document"].is_string() || !j["question"].is_string()) return {};
  return job_key(j["document"].get<std::string>(), j["question"].get<std::string>());
}

std::string key_of_openai_line(const json& j) {
  return j.is_object() && j.contains("custom_id") && j["custom_id"].is_string() ? j["custom_id"].get<std::string>() : "";
}

// Work shared by the document workers: the queue, the counters, the first fatal error.
struct Shared {
  std::mutex mutex;
  size_t next = 0;
  std::optional<Error> fatal;
  std::atomic<int64_t> bytes_done{0}, tokens{0}, documents_done{0}, questions_done{0}, failures{0}, answered{0},
      ingested{0};
};

class JobRun {
 public:
  JobRun(const JobSpec& job, const RunOptions& options, Engine& engine, ResultsFile& results)
      : job_(job), options_(options), engine_(engine), results_(results) {}

  // The document workers and the progress reporter; returns once all documents are done or a fatal
  // error (or on_error: stop) ended the job.
  Result<void> run(const std::vector<const DocumentSpec*>& docs, int32_t workers, BatchProgress totals) {
    totals_ = totals;
    t0_ = Clock::now();
    std::vector<std::thread> threads;
    for (int32_t i = 0; i < workers; ++i) threads.emplace_back([&] { work(docs); });
    std::unique_lock<std::mutex> lock(done_mutex_);
    while (!done_cv_.wait_for(lock, std::chrono::milliseconds(250), [&] { return finished_ == workers; })) {
      lock.unlock();
      report();
      lock.lock();
    }
    lock.unlock();
    for (auto& t : threads) t.join();
    report();
    if (shared_.fatal) return tl::unexpected(*shared_.fatal);
    return {};
  }

  const Shared& shared() const { return shared_; }

 private:
  void report() {
    if (!options_.on_progress) return;
    BatchProgress p = totals_;
    p.documents_done = shared_.documents_done;
    p.questions_done = totals_.questions_done + shared_.questions_done;
    p.bytes_done = shared_.bytes_done;
    p.tokens = shared_.tokens;
    p.failures = shared_.failures;
    p.elapsed_s = std::chrono::duration<double>(Clock::now() - t0_).count();
    options_.on_progress(p);
  }

  void work(const std::vector<const DocumentSpec*>& docs) {
    for (;;) {
      const DocumentSpec* d = nullptr;
      {
        std::lock_guard<std::mutex> lock(shared_.mutex);
        if (shared_.fatal || shared_.next >= docs.size() || options_.cancel.cancelled()) break;
        d = docs[shared_.next++];
      }
      if (auto r = document(*d); !r) {
        std::lock_guard<std::mutex> lock(shared_.mutex);
        if (!shared_.fatal) shared_.fatal = r.error();
        options_.cancel.cancel("the job stopped: " + r.error().message);
      }
      ++shared_.documents_done;
    }
    std::lock_guard<std::mutex> lock(done_mutex_);
    ++finished_;
    done_cv_.notify_all();
  }

  // Writes the line of one (document, question); an error line when `error` is set.
  Result<void> write(const DocumentSpec& d, const std::string& question, const Answer* a, const Error* error) {
    json line = {{"document", d.id}, {"question", question}};
    if (a) {
      line["answer"] = a->text;
      line["recalled"] = {{"spans", api::spans_json(a->spans)}, {"tokens", a->recalled}};
      line["context_tokens"] = a->context_tokens;
      line["timings_ms"] = a->timings_ms;
      line["error"] = nullptr;
    } else {
      line["answer"] = nullptr;
      line["error"] = {{"code", std::string(errc_name(error->code))}, {"message", error->message}, {"input", d.origin}};
      ++shared_.failures;
    }
    if (auto r = results_.append(line); !r) return r;
    ++shared_.questions_done;
    ++shared_.answered;
    if (error && job_.stop_on_error) return make_error(error->code, d.origin + ": " + error->message);
    return {};
  }

  Result<void> fail_all(const DocumentSpec& d, const std::vector<std::string>& pending, const Error& e) {
    spdlog::warn("document '{}' ({}): {}", d.id, d.origin, e.message);
    for (const std::string& q : pending) {
      if (auto r = write(d, q, nullptr, &e); !r) return r;
    }
    return {};
  }

  Result<void> document(const DocumentSpec& d) {
    std::vector<std::string> pending;
    for (const std::string& q : questions_for(job_, d)) {
      if (!results_.done(job_key(d.id, q))) pending.push_back(q);
    }
    if (pending.empty()) return {};
    if (!d.error.empty()) return fail_all(d, pending, Error{errc::invalid_argument, d.error});
    const std::string store = (fs::path(job_.stores) / d.id).string();
    if (auto r = ingest(d, store); !r) {
      if (r.error().code == errc::cancelled && options_.cancel.cancelled()) return {};
      if (r.error().code == errc::disk_full) return tl::unexpected(r.error());  // every later document would fail too
      return fail_all(d, pending, r.error());
    }
    for (const std::string& q : pending) {
      if (options_.cancel.cancelled()) return {};
      AskOptions opt;
      opt.cancel = options_.cancel;
      auto a = engine_.ask(store, q, opt);
      if (!a && a.error().code == errc::cancelled && options_.cancel.cancelled()) return {};
      auto r = a ? write(d, q, &*a, nullptr) : write(d, q, nullptr, &a.error());
      if (!r) return r;
    }
    return {};
  }

  // Makes the document's store complete: nothing to do when an earlier run finished it, continued from
  // its last committed slice when a run was killed while ingesting, else from the start.
  Result<void> ingest(const DocumentSpec& d, const std::string& store) {
    uint64_t have = 0;
    std::error_code ec;
    if (fs::exists(fs::path(store) / "manifest.json", ec)) {
      auto s = engine_.open_store(store);
      if (s && s->resumable && !s->open && s->tokens > 0) return {};  // finished by an earlier run
      if (s && s->open) {
        have = s->bytes;
      } else {
        spdlog::info("document '{}': its store cannot be continued ({}); ingesting it again", d.id,
                     s ? "no resumable state" : s.error().what());
        fs::remove_all(store, ec);
      }
    } else if (fs::exists(store, ec)) {
      fs::remove_all(store, ec);
    }
    std::ifstream file;
    uint64_t total = 0;
    if (d.text) {
      total = d.text->size();
    } else {
      file.open(d.path, std::ios::binary);
      if (!file) return make_error(errc::io_failed, "cannot read document '" + d.path + "'");
      total = fs::file_size(d.path, ec);
      if (ec) return make_error(errc::io_failed, "cannot read document '" + d.path + "': " + ec.message());
    }
    if (total == 0) return make_error(errc::invalid_argument, "document '" + (d.text ? d.origin : d.path) + "' is empty");
    if (have > total) {
      fs::remove_all(store, ec);  // the file shrank since: start over
      have = 0;
    }
    auto stream = engine_.open_stream(store);
    if (!stream) return tl::unexpected(stream.error());
    if (!d.text) file.seekg(static_cast<std::streamoff>(have));
    std::string slice;
    IngestOptions opt;
    opt.keep_open = true;
    opt.atomic = true;
    opt.cancel = options_.cancel;
    if (have > 0) spdlog::info("document '{}': resuming its ingest at byte {} of {}", d.id, have, total);
    for (uint64_t at = have; at < total;) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(kSliceBytes, total - at));
      if (d.text) {
        slice.assign(*d.text, static_cast<size_t>(at), n);
      } else {
        slice.resize(n);
        file.read(slice.data(), static_cast<std::streamsize>(n));
        if (static_cast<size_t>(file.gcount()) != n) return make_error(errc::io_failed, "document '" + d.path + "' changed while it was read");
      }
      auto rep = (*stream)->append(slice, opt);
      if (!rep) return tl::unexpected(rep.error());
      if (rep->replaced_bytes > 0) {
        stream->reset();
        fs::remove_all(store, ec);
        return make_error(errc::bad_utf8, "document '" + (d.text ? d.origin : d.path) + "' is not valid UTF-8 (" +
                                              std::to_string(rep->replaced_bytes) + " bytes near byte " + std::to_string(at) + ")");
      }
      at += n;
      shared_.bytes_done += static_cast<int64_t>(n);
      shared_.tokens += rep->tokens_added;
    }
    auto closed = (*stream)->close(opt);
    if (!closed) return tl::unexpected(closed.error());
    shared_.tokens += closed->tokens_added;
    ++shared_.ingested;
    return {};
  }

  const JobSpec& job_;
  const RunOptions& options_;
  Engine& engine_;
  ResultsFile& results_;
  Shared shared_;
  BatchProgress totals_;
  Clock::time_point t0_;
  std::mutex done_mutex_;
  std::condition_variable done_cv_;
  int32_t finished_ = 0;
};

int32_t auto_concurrency(const Config& cfg) {
  // Each document in flight holds a pipeline whose queues the memory budget bounds; beyond the cores
  // more documents only interleave. The cores this process may run on (a Slurm task's, taskset's), not the
  // machine's.
  cpu_set_t set;
  CPU_ZERO(&set);
  const int32_t cores = sched_getaffinity(0, sizeof(set), &set) == 0
                            ? std::max(1, CPU_COUNT(&set))
                            : static_cast<int32_t>(std::max(1u, std::thread::hardware_concurrency()));
  const int32_t by_memory = static_cast<int32_t>(std::max<int64_t>(1, cfg.pipeline.memory_budget_mb / 256));
  return std::max(1, std::min(cores, by_memory));
}

std::vector<const DocumentSpec*> shard_documents(const JobSpec& job, const RunOptions& o) {
  std::vector<const DocumentSpec*> out;
  for (const DocumentSpec& d : job.documents) {
    if (in_shard(d.id, o.shard_index, o.shard_count)) out.push_back(&d);
  }
  return out;
}

std::string resolved_yaml(const JobSpec& job, const RunOptions& o) {
  std::string s = "# The job as it ran (" + storage::now_iso8601() + "): the engine configuration after the job's settings,\n";
  s += "# then what the job file chose. Written by `ilre batch run`.\n";
  s += "job: " + json(job.file).dump() + "\n";
  s += "shard: " + json(std::to_string(o.shard_index) + "/" + std::to_string(o.shard_count)).dump() + "\n";
  s += "documents: " + std::to_string(job.documents.size()) + "\n";
  s += "questions: " + json(job.questions).dump() + "\n";
  s += "output: " + json(job.output).dump() + "\nstores: " + json(job.stores).dump() + "\n";
  s += "concurrency: " + (job.concurrency ? std::to_string(job.concurrency) : std::string("auto")) + "\n";
  s += "on_error: " + std::string(job.stop_on_error ? "stop" : "continue") + "\n";
  s += "settings: " + json(job.settings).dump() + "\nconfig:\n";
  std::string cfg = to_yaml(job.config);
  for (size_t at = 0; at < cfg.size();) {
    const size_t nl = cfg.find('\n', at);
    s += "  " + cfg.substr(at, nl == std::string::npos ? std::string::npos : nl - at + 1);
    if (nl == std::string::npos) break;
    at = nl + 1;
  }
  if (s.back() != '\n') s += '\n';
  return s;
}

}  // namespace

Result<RunSummary> run_job(const JobSpec& job, const RunOptions& options) {
  const auto t0 = Clock::now();
  auto results = ResultsFile::open(job.output, key_of_job_line);
  if (!results) return tl::unexpected(results.error());
  if (auto w = write_file_atomically(job.output + ".config.yaml", resolved_yaml(job, options)); !w) return tl::unexpected(w.error());
  RunSummary sum;
  BatchProgress totals;
  std::vector<const DocumentSpec*> docs = shard_documents(job, options);
  std::vector<const DocumentSpec*> todo;
  sum.documents = static_cast<int64_t>(docs.size());
  for (const DocumentSpec* d : docs) {
    bool pending = false;
    for (const std::string& q : questions_for(job, *d)) {
      ++sum.questions;
      const std::string k = job_key(d->id, q);
      if ((*results)->done(k)) {
        ++sum.already_done;
        sum.failed_before += (*results)->failed(k);
      } else {
        pending = true;
      }
    }
    if (!pending) continue;
    todo.push_back(d);
    std::error_code ec;
    if (!d->text && d->error.empty()) totals.bytes_total += static_cast<int64_t>(fs::file_size(d->path, ec));
    if (d->text) totals.bytes_total += static_cast<int64_t>(d->text->size());
  }
  totals.documents_total = static_cast<int64_t>(todo.size());
  totals.questions_total = sum.questions;
  totals.questions_done = sum.already_done;
  if (!todo.empty()) {
    auto engine = Engine::open(job.config);
    if (!engine) return tl::unexpected(engine.error());
    const int32_t workers = std::min<int32_t>(job.concurrency ? job.concurrency : auto_concurrency(job.config),
                                              static_cast<int32_t>(todo.size()));
    JobRun run(job, options, **engine, **results);
    auto r = run.run(todo, workers, totals);
    sum.answered = run.shared().answered;
    sum.failures = run.shared().failures;
    sum.tokens = run.shared().tokens;
    sum.ingested_documents = run.shared().ingested;
    if (!r) return tl::unexpected(r.error());
  }
  sum.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return sum;
}

Result<std::string> job_status(const JobSpec& job, bool as_json) {
  auto lines = ResultsFile::read(job.output);
  if (!lines) return tl::unexpected(lines.error());
  std::map<std::string, std::pair<int64_t, int64_t>> per_doc;  // answered, errors
  for (const json& j : *lines) {
    const std::string k = key_of_job_line(j);
    if (k.empty()) continue;
    auto& c = per_doc[j["document"].get<std::string>()];
    (j.contains("error") && !j["error"].is_null() ? c.second : c.first) += 1;
  }
  json docs = json::array();
  int64_t total_q = 0, done_q = 0, failed_q = 0;
  for (const DocumentSpec& d : job.documents) {
    const auto n = static_cast<int64_t>(questions_for(job, d).size());
    const auto [ok, err] = per_doc.count(d.id) ? per_doc[d.id] : std::pair<int64_t, int64_t>{0, 0};
    const fs::path store = fs::path(job.stores) / d.id;
    std::string state = "absent";
    int64_t tokens = 0;
    std::error_code ec;
    if (fs::exists(store / "manifest.json", ec)) {
      const json m = json::parse(std::ifstream(store / "manifest.json"), nullptr, false);
      state = "present";
      if (m.is_object()) tokens = m.value("n_tokens", int64_t{0});
    }
    total_q += n;
    done_q += ok + err;
    failed_q += err;
    docs.push_back({{"id", d.id}, {"questions", n}, {"answered", ok}, {"failed", err}, {"store", state}, {"tokens", tokens}});
  }
  json out = {{"job", job.file}, {"output", job.output}, {"documents", docs}, {"questions", total_q},
              {"done", done_q}, {"failed", failed_q}, {"remaining", total_q - done_q}};
  if (as_json) return out.dump(2) + "\n";
  std::string text;
  for (const json& d : docs) {
    text += d["id"].get<std::string>() + ": " + std::to_string(d["answered"].get<int64_t>() + d["failed"].get<int64_t>()) + "/" +
            std::to_string(d["questions"].get<int64_t>()) + " questions (" + std::to_string(d["failed"].get<int64_t>()) +
            " failed), store " + d["store"].get<std::string>() + ", " + std::to_string(d["tokens"].get<int64_t>()) + " tokens\n";
  }
  text += std::to_string(done_q) + " of " + std::to_string(total_q) + " (document, question) done, " + std::to_string(failed_q) +
          " failed, " + std::to_string(total_q - done_q) + " remaining\n";
  return text;
}

Result<RunSummary> run_openai_batch(const Config& config, const std::string& input, const std::string& output,
                                    int32_t concurrency, const RunOptions& options) {
  const auto t0 = Clock::now();
  std::ifstream in(input);
  if (!in) return make_error(errc::io_failed, "cannot read the batch input '" + input + "'");
  struct Line {
    int64_t no;
    std::string text;
  };
  std::vector<Line> lines;
  std::string text;
  for (int64_t no = 1; std::getline(in, text); ++no) {
    if (text.find_first_not_of(" \t\r") != std::string::npos) lines.push_back({no, text});
  }
  auto results = ResultsFile::open(output, key_of_openai_line);
  if (!results) return tl::unexpected(results.error());
  RunSummary sum;
  sum.questions = static_cast<int64_t>(lines.size());
  std::shared_ptr<Engine> engine;
  std::atomic<size_t> next{0};
  std::atomic<int64_t> answered{0}, failures{0};
  std::mutex fatal_mutex;
  std::optional<Error> fatal;
  const std::string scratch = output + ".scratch";
  auto key_for = [&](const Line& l, const json& j) {
    return j.is_object() && j.contains("custom_id") && j["custom_id"].is_string() ? j["custom_id"].get<std::string>()
                                                                                  : input + ":" + std::to_string(l.no);
  };
  std::vector<const Line*> todo;
  for (const Line& l : lines) {
    const json j = json::parse(l.text, nullptr, false);
    if ((*results)->done(key_for(l, j))) {
      ++sum.already_done;
      sum.failed_before += (*results)->failed(key_for(l, j));
    } else {
      todo.push_back(&l);
    }
  }
  if (todo.empty()) return sum;
  auto e = Engine::open(config);
  if (!e) return tl::unexpected(e.error());
  engine = *e;
  auto worker = [&] {
    for (;;) {
      const size_t i = next.fetch_add(1);
      if (i >= todo.size() || options.cancel.cancelled()) return;
      const Line& l = *todo[i];
      const json j = json::parse(l.text, nullptr, false);
      json out = {{"id", "batch_req_" + std::to_string(stable_hash(key_for(l, j)))}, {"custom_id", key_for(l, j)}};
      auto refuse = [&](const std::string& code, const std::string& message) {
        out["response"] = nullptr;
        out["error"] = {{"code", code}, {"message", input + ":" + std::to_string(l.no) + ": " + message}};
        ++failures;
      };
      if (!j.is_object()) {
        refuse("invalid_json", "the line is not a JSON object");
      } else if (!j.contains("custom_id") || !j["custom_id"].is_string()) {
        refuse("missing_custom_id", "\"custom_id\" (a string) is required");
      } else if (j.value("method", "POST") != "POST" || !j.contains("url") || !j["url"].is_string() ||
                 (j["url"] != "/v1/chat/completions" && j["url"] != "/v1/completions")) {
        refuse("invalid_url", "only POST /v1/chat/completions and /v1/completions are supported");
      } else if (!j.contains("body") || !j["body"].is_object()) {
        refuse("invalid_body", "\"body\" must be a JSON object");
      } else {
        openai::RequestContext ctx;
        ctx.scratch_dir = scratch;
        ctx.cancel = options.cancel;
        const std::string body = j["body"].dump();
        const openai::Response r = j["url"] == "/v1/chat/completions" ? openai::chat_completions(*engine, body, ctx)
                                                                      : openai::completions(*engine, body, ctx);
        if (r.status == 499 && options.cancel.cancelled()) return;
        out["response"] = {{"status_code", r.status}, {"request_id", out["id"]}, {"body", json::parse(r.body, nullptr, false)}};
        out["error"] = nullptr;
        if (r.status != 200) ++failures;
      }
      if (auto w = (*results)->append(out); !w) {
        std::lock_guard<std::mutex> lock(fatal_mutex);
        if (!fatal) fatal = w.error();
        options.cancel.cancel("the results file cannot be written");
        return;
      }
      ++answered;
      if (options.on_progress) {
        BatchProgress p;
        p.questions_total = sum.questions;
        p.questions_done = sum.already_done + answered;
        p.failures = failures;
        p.elapsed_s = std::chrono::duration<double>(Clock::now() - t0).count();
        options.on_progress(p);
      }
    }
  };
  std::vector<std::thread> threads;
  for (int32_t i = 0; i < std::max(1, concurrency); ++i) threads.emplace_back(worker);
  for (auto& t : threads) t.join();
  std::error_code ec;
  fs::remove_all(scratch, ec);
  sum.answered = answered;
  sum.failures = failures;
  sum.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  if (fatal) return tl::unexpected(*fatal);
  return sum;
}

Result<int64_t> merge_results(const std::vector<std::string>& inputs, const std::string& output) {
  std::map<std::string, json> all;  // ordered by key: the same file whatever the shards' order
  for (const std::string& in : inputs) {
    if (!fs::exists(in)) return make_error(errc::io_failed, "cannot read '" + in + "'");
    auto lines = ResultsFile::read(in);
    if (!lines) return tl::unexpected(lines.error());
    for (json& j : *lines) {
      std::string k = key_of_job_line(j);
      if (k.empty()) k = key_of_openai_line(j);
      if (k.empty()) return make_error(errc::bad_json, "'" + in + "' has a line that is not a batch result");
      all.emplace(std::move(k), std::move(j));
    }
  }
  std::string text;
  for (const auto& [k, j] : all) text += api::dump(j) + "\n";
  if (auto w = write_file_atomically(output, text); !w) return tl::unexpected(w.error());
  return static_cast<int64_t>(all.size());
}

}  // namespace ilre::batch
