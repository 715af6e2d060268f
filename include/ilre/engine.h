// ilre as a library: load a model once, ingest documents into stores, ask questions about them.
//
//   auto engine = ilre::Engine::open(config);                 // Result<std::shared_ptr<Engine>>
//   auto report = (*engine)->ingest_file("book.txt", "stores/book", {});
//   auto answer = (*engine)->ask("stores/book", "Who wrote the letter?", {.on_token = print});
//   auto store = (*engine)->open_store("stores/book");          // Result<Store>: tokens, l_R, model
//
// Ingest streams the document through the pipeline read -> tokenize -> prefill -> spill in constant memory;
// ask runs score -> pool -> recall -> decode over the stored keys and never re-runs the prefill. No exception
// crosses this API: every call returns a Result with an ilre::errc.
#pragma once

#include <cstdint>
#include <functional>
#include <istream>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ilre/config.h"
#include "ilre/error.h"

namespace ilre {

// Long work reports {phase, processed, total, elapsed}; total < 0 when unknown (a stream on stdin).
struct Progress {
  std::string phase;        // "ingest", "score", "prefill-prompt", "generate"
  int64_t processed = 0;    // bytes (ingest) or tokens
  int64_t total = -1;
  int64_t tokens = 0;       // document tokens through the prefill so far
  double elapsed_ms = 0;
};
using ProgressFn = std::function<void(const Progress&)>;

// Stops a running ingest or ask from any thread (Ctrl-C, a client that went away, a deadline).
class CancelHandle {
 public:
  CancelHandle();
  void cancel(std::string reason = "cancelled") const;
  bool cancelled() const;
  struct State;
  const std::shared_ptr<State>& state() const { return state_; }

 private:
  std::shared_ptr<State> state_;
};

struct IngestOptions {
  bool append = false;          // continue an existing store (a document stream) instead of creating one
  ProgressFn on_progress;       // called a few times a second
  CancelHandle cancel;
};

struct IngestReport {
  std::string store_dir;
  int64_t tokens_added = 0;
  int64_t total_tokens = 0;     // in the store after this ingest
  int64_t segments_added = 0;
  int32_t layer = -1;           // l_R
  uint64_t bytes_read = 0;
  uint64_t replaced_bytes = 0;  // invalid UTF-8 bytes replaced by U+FFFD
  uint64_t raw_key_bytes = 0;   // keys of this ingest in the store dtype, uncompressed
  uint64_t stored_key_bytes = 0;
  double key_compression_ratio = 0;
  std::map<std::string, double> timings_ms;  // per stage busy time, and "total"
  double tokens_per_second = 0;
  double peak_rss_mb = 0;
};

struct AskOptions {
  ProgressFn on_progress;
  // Each generated piece of text as soon as it is sampled; return false to stop generating.
  std::function<bool(std::string_view piece)> on_token;
  CancelHandle cancel;
};

struct Answer {
  std::string text;
  int64_t context_tokens = 0;                      // document tokens in the store
  int64_t recalled = 0;                            // document tokens in the compressed prompt
  std::vector<std::pair<int64_t, int64_t>> spans;  // recalled [start, end) document ranges
  bool compressed = true;                          // false: the document fitted the budget whole
  int64_t prompt_tokens = 0;                       // compressed prompt + query
  int64_t generated_tokens = 0;
  int32_t layer = -1;
  std::map<std::string, double> timings_ms;        // per stage busy time, "ttft" and "total"
  double peak_rss_mb = 0;
};

// A document's persisted keys and tokens: what `ingest` made and `ask` reads.
struct Store {
  std::string dir;
  std::string model_name;       // the model it was made with
  std::string model_fingerprint;
  int32_t layer = -1;           // l_R of its keys
  int64_t tokens = 0;           // document tokens stored
  int64_t segments = 0;
  uint64_t stored_bytes = 0;    // keys + tokens on disk, compressed
  bool resumable = false;       // holds the streaming state, so --append can continue it
  std::string created_at, updated_at;  // ISO 8601 UTC
};

class Engine {
 public:
  // Validates the config, loads the model (lookup: config path, $ILRE_MODEL, models/, ../shared/models/),
  // starts the thread pools.
  static Result<std::shared_ptr<Engine>> open(Config config);
  ~Engine();

  const Config& config() const;
  std::string model_name() const;
  // l_R the engine uses: config, else configs/models/<model>.yaml (from `ilre calibrate`), else n_layer/4.
  int32_t retrieval_layer() const;
  // Recall budget in tokens for a query of n_query tokens (config or 75% of the trained context).
  int64_t recall_budget(int64_t n_query) const;

  // path "-" reads stdin.
  Result<IngestReport> ingest_file(const std::string& path, const std::string& store_dir, IngestOptions options);
  Result<IngestReport> ingest_text(std::string text, const std::string& store_dir, IngestOptions options);
  // A stream the caller owns (a socket buffer, a decompressor); read until EOF.
  Result<IngestReport> ingest(std::istream& document, const std::string& store_dir, IngestOptions options);
  // Opens a store's manifest (no keys are read) and checks it was made with this engine's model.
  Result<Store> open_store(const std::string& store_dir) const;
  Result<Answer> ask(const std::string& store_dir, const std::string& question, AskOptions options);
  Result<Answer> ask(const Store& store, const std::string& question, AskOptions options);

  struct Impl;

 private:
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Peak resident set size of this process in MiB (VmHWM).
double peak_rss_mb();

}  // namespace ilre
