// Running batch jobs over the library API: each document ingested once (resuming a half-ingested store
// where it stopped), its questions asked over its store, one result line per (document, question);
// documents run concurrently within the memory budget. A rerun of the same command continues where a
// killed run stopped. Also the OpenAI Batch format, answered by the daemon's own request handling.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "batch/job.h"
#include "ilre/engine.h"

namespace ilre::batch {

struct BatchProgress {
  int64_t documents_done = 0, documents_total = 0;
  int64_t questions_done = 0, questions_total = 0;
  int64_t bytes_done = 0, bytes_total = 0;  // document bytes ingested (this run) of those to ingest
  int64_t tokens = 0;                       // tokens ingested this run
  double elapsed_s = 0;
  int64_t failures = 0;
};

struct RunOptions {
  int32_t shard_index = 0;
  int32_t shard_count = 1;
  std::function<void(const BatchProgress&)> on_progress;  // a few times a second, from one thread
  CancelHandle cancel;
};

struct RunSummary {
  int64_t documents = 0;        // in this shard
  int64_t questions = 0;        // result lines the job has in all (this shard)
  int64_t answered = 0;         // lines written by this run
  int64_t already_done = 0;     // lines found from an earlier run
  int64_t ingested_documents = 0;
  int64_t tokens = 0;
  int64_t failures = 0;         // error lines written by this run
  int64_t failed_before = 0;    // error lines an earlier run wrote (the job's exit status counts both)
  double seconds = 0;
};

// Runs (or continues) the job. Errors only for what stops the whole job (the model cannot be loaded, the
// results file cannot be written, on_error: stop); a bad document is an error line and counted.
Result<RunSummary> run_job(const JobSpec& job, const RunOptions& options);

// What an earlier run left: result lines present per document, stores and their state.
Result<std::string> job_status(const JobSpec& job, bool as_json);

// OpenAI Batch: input lines {"custom_id", "method": "POST", "url", "body"} -> output lines {"id",
// "custom_id", "response": {"status_code", "request_id", "body"}, "error"}; body exactly the daemon's.
Result<RunSummary> run_openai_batch(const Config& config, const std::string& input, const std::string& output,
                                    int32_t concurrency, const RunOptions& options);

// Joins shard outputs into one file: every line once (by its key), in a stable order.
Result<int64_t> merge_results(const std::vector<std::string>& inputs, const std::string& output);

}  // namespace ilre::batch
