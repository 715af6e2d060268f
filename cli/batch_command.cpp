// batch run | status | merge: config-driven jobs (batch/) from the command line.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "batch/job.h"
#include "batch/runner.h"
#include "commands.h"
#include "interrupt.h"
#include "options.h"

namespace ilre::cli {
namespace {

// Exit status when the job ran to its end but some (document, question) failed.
constexpr int kSomeFailed = 3;

std::pair<int32_t, int32_t> parse_shard(const std::string& s) {
  if (s.empty()) return {0, 1};
  const size_t slash = s.find('/');
  try {
    if (slash != std::string::npos) {
      const int i = std::stoi(s.substr(0, slash)), n = std::stoi(s.substr(slash + 1));
      if (n >= 1 && i >= 0 && i < n) return {i, n};
    }
  } catch (const std::exception&) {
  }
  throw Exception(errc::invalid_argument, "--shard must be I/N with 0 <= I < N (got '" + s + "')");
}

// A bar on a terminal; a plain line every 10 s otherwise (logs of a scheduler).
class BatchProgressView {
 public:
  BatchProgressView() : tty_(::isatty(STDERR_FILENO) != 0) {}
  ~BatchProgressView() {
    if (drawn_) std::fputs("\n", stderr);
  }
  void update(const batch::BatchProgress& p) {
    const double tps = p.elapsed_s > 0 ? static_cast<double>(p.tokens) / p.elapsed_s : 0.0;
    const double frac = p.questions_total > 0 ? static_cast<double>(p.questions_done) / static_cast<double>(p.questions_total) : 0.0;
    // ETA by bytes while ingest dominates, else by questions.
    double eta = 0;
    if (p.bytes_total > 0 && p.bytes_done > 0 && p.bytes_done < p.bytes_total) {
      eta = p.elapsed_s * static_cast<double>(p.bytes_total - p.bytes_done) / static_cast<double>(p.bytes_done);
    } else if (frac > 0 && frac < 1) {
      eta = p.elapsed_s * (1 - frac) / frac;
    }
    char line[256];
    std::snprintf(line, sizeof(line), "documents %lld/%lld  questions %lld/%lld  %.0f tok/s  ETA %.0fs  failed %lld",
                  static_cast<long long>(p.documents_done), static_cast<long long>(p.documents_total),
                  static_cast<long long>(p.questions_done), static_cast<long long>(p.questions_total), tps, eta,
                  static_cast<long long>(p.failures));
    if (tty_) {
      const int filled = static_cast<int>(frac * 24);
      std::fprintf(stderr, "\r[%.*s%*s] %s   ", filled, "########################", 24 - filled, "", line);
      drawn_ = true;
    } else if (p.elapsed_s - last_ >= 10.0) {
      last_ = p.elapsed_s;
      spdlog::info("{}", line);
    }
  }

 private:
  bool tty_;
  bool drawn_ = false;
  double last_ = -1e9;
};

int finish(const batch::RunSummary& s) {
  std::fprintf(stderr,
               "batch: %lld documents, %lld (document, question) in all: %lld answered now, %lld done before; %lld "
               "documents ingested (%lld tokens); %lld failed (%lld before); %.1f s\n",
               static_cast<long long>(s.documents), static_cast<long long>(s.questions), static_cast<long long>(s.answered),
               static_cast<long long>(s.already_done), static_cast<long long>(s.ingested_documents),
               static_cast<long long>(s.tokens), static_cast<long long>(s.failures), static_cast<long long>(s.failed_before),
               s.seconds);
  return s.failures + s.failed_before > 0 ? kSomeFailed : 0;
}

struct BatchArgs {
  std::string job;
  std::string shard;
  std::string input, output;
  std::optional<int32_t> concurrency;
  std::vector<std::string> merge_inputs;
  bool json = false;
};

void register_run(CLI::App* batch, CLI::App& app) {
  auto* cmd = batch->add_subcommand("run", "Run (or continue) a job: JOB.yaml, or --input requests.jsonl --output results.jsonl (OpenAI Batch)");
  auto a = std::make_shared<CommonArgs>();
  auto b = std::make_shared<BatchArgs>();
  add_common(cmd, *a);
  cmd->add_option("job", b->job, "job file (configs/jobs/reference.yaml documents every key)");
  cmd->add_option("--shard", b->shard, "I/N: this process takes the documents whose id hashes to I of N");
  cmd->add_option("--input", b->input, "OpenAI Batch input (JSONL of {custom_id, method, url, body})");
  cmd->add_option("--output", b->output, "OpenAI Batch output (JSONL; a rerun continues it)");
  cmd->add_option("--concurrency", b->concurrency, "documents (job) or requests (OpenAI Batch) at once; default: the job's, or 2")
      ->check(CLI::Range(1, 256));
  cmd->callback([=, &app] {
    // Progress lines and per-document warnings are the job's log: shown unless --log-level says otherwise.
    if (app.get_option("--log-level")->count() == 0) spdlog::set_level(spdlog::level::info);
    batch::RunOptions opt;
    std::tie(opt.shard_index, opt.shard_count) = parse_shard(b->shard);
    BatchProgressView view;
    opt.on_progress = [&view](const batch::BatchProgress& p) { view.update(p); };
    Result<batch::RunSummary> r = make_error(errc::internal, "nothing ran");
    if (!b->input.empty() || !b->output.empty()) {
      if (b->input.empty() || b->output.empty() || !b->job.empty()) {
        throw Exception(errc::invalid_argument, "the OpenAI Batch form is: ilre batch run --input IN.jsonl --output OUT.jsonl");
      }
      const Config cfg = resolve_config(*a);
      InterruptGuard guard(opt.cancel);
      r = batch::run_openai_batch(cfg, b->input, b->output, b->concurrency.value_or(2), opt);
    } else {
      if (b->job.empty()) throw Exception(errc::invalid_argument, "batch run needs JOB.yaml (or --input/--output)");
      std::vector<std::string> overrides = a->sets;
      if (a->model) overrides.push_back("model.path=" + *a->model);
      if (a->threads) overrides.push_back("model.threads=" + std::to_string(*a->threads));
      if (a->layer) overrides.push_back("prefill.layer=" + std::to_string(*a->layer));
      if (a->budget) overrides.push_back("recall.budget=" + std::to_string(*a->budget));
      auto job = batch::load_job(b->job, overrides);
      if (!job) throw Exception(job.error());
      if (b->concurrency) job->concurrency = *b->concurrency;
      InterruptGuard guard(opt.cancel);
      r = batch::run_job(*job, opt);
    }
    if (!r) throw Exception(r.error());
    if (opt.cancel.cancelled()) {
      std::fprintf(stderr, "batch: interrupted; run the same command again to continue\n");
      std::exit(130);
    }
    const int code = finish(*r);
    if (a->json) {
      std::printf("%s\n", nlohmann::json{{"documents", r->documents}, {"questions", r->questions}, {"answered", r->answered},
                                          {"already_done", r->already_done}, {"ingested_documents", r->ingested_documents},
                                          {"tokens", r->tokens}, {"failures", r->failures}, {"failed_before", r->failed_before},
                                          {"seconds", r->seconds}}
                               .dump(2)
                               .c_str());
    }
    if (code != 0) std::exit(code);
  });
}

void register_status(CLI::App* batch) {
  auto* cmd = batch->add_subcommand("status", "What a job has done: answered and failed questions per document, stores");
  auto b = std::make_shared<BatchArgs>();
  cmd->add_option("job", b->job, "job file")->required();
  cmd->add_flag("--json", b->json, "machine-readable");
  cmd->callback([=] {
    auto job = batch::load_job(b->job, {});
    if (!job) throw Exception(job.error());
    auto s = batch::job_status(*job, b->json);
    if (!s) throw Exception(s.error());
    std::cout << *s;
  });
}

void register_merge(CLI::App* batch) {
  auto* cmd = batch->add_subcommand("merge", "Join shard outputs: every result once, in a stable order");
  auto b = std::make_shared<BatchArgs>();
  cmd->add_option("--output", b->output, "merged file")->required();
  cmd->add_option("inputs", b->merge_inputs, "shard outputs")->required();
  cmd->callback([=] {
    auto n = batch::merge_results(b->merge_inputs, b->output);
    if (!n) throw Exception(n.error());
    std::fprintf(stderr, "merged %lld results into %s\n", static_cast<long long>(*n), b->output.c_str());
  });
}

}  // namespace

void register_batch_command(CLI::App& app) {
  auto* batch = app.add_subcommand("batch", "Config-driven batch jobs: resumable, shardable, OpenAI Batch compatible");
  batch->require_subcommand(1);
  register_run(batch, app);
  register_status(batch);
  register_merge(batch);
}

}  // namespace ilre::cli
