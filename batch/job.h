// A batch job file (configs/jobs/*.yaml; every key documented in configs/jobs/reference.yaml): which model
// and settings, which documents, which questions, where results go. Parsed and checked completely before
// any work starts, so a bad key or type is a clear error, not a failure an hour in.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ilre/config.h"
#include "ilre/error.h"

namespace ilre::batch {

// One document of the job. Exactly one of path and text is set, unless `error` says why neither could be
// (a bad JSONL line becomes a document that fails with that message, so the job goes on).
struct DocumentSpec {
  std::string id;
  std::string path;
  std::optional<std::string> text;
  std::vector<std::string> questions;  // its own, asked besides the job's
  std::string origin;                  // "docs.jsonl:17", "glob corpus/*.txt", "documents[3]"
  std::string error;
};

struct JobSpec {
  std::string file;             // the job file (relative paths are relative to its folder)
  Config config;                // model + settings applied
  std::vector<std::string> settings;  // the "k=v" overrides as given
  std::vector<DocumentSpec> documents;
  std::vector<std::string> questions;
  std::string output;           // JSONL, one line per (document, question)
  std::string stores;           // one store per document, kept for later jobs or the daemon
  int32_t concurrency = 0;      // documents in flight; 0 = auto (cores, bounded by the memory budget)
  bool stop_on_error = false;
};

// Reads and checks the job file; `overrides` (--set k=v) are applied after the file's settings.
Result<JobSpec> load_job(const std::string& path, const std::vector<std::string>& overrides);

// The questions asked of one document: the job's, then its own, each once, in that order.
std::vector<std::string> questions_for(const JobSpec& job, const DocumentSpec& doc);

// Deterministic share of the documents for --shard I/N: by a stable hash (FNV-1a) of the id.
bool in_shard(const std::string& id, int32_t index, int32_t count);
uint64_t stable_hash(const std::string& s);

}  // namespace ilre::batch
