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
//
// A document stream (open_stream) grows by appends while other threads ask about it:
//   auto doc = (*engine)->open_stream("stores/log");           // Result<std::unique_ptr<DocumentStream>>
//   (*doc)->append("first part, cut mid-wo");  (*doc)->append("rd and more");
//   (*engine)->ask("stores/log", "...", {});                    // sees every completed append
//   (*doc)->close();                                             // the document is complete
// The parts give exactly the tokens (and keys) of the whole text ingested at once.
//
// Thread-safety: Engine is safe to use from any number of threads at once (ingests and asks run as
// separate pipelines on one shared executor, compute pool and memory budget). CancelHandle is safe from
// any thread. DocumentStream serialises its own calls. Progress, Store, IngestReport and Answer are plain
// values. on_progress runs on the calling thread (a few times a second), on_token on an engine thread;
// each is called one at a time, but the two may run at the same time.
#pragma once

#include <cstdint>
#include <functional>
#include <istream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ilre/config.h"
#include "ilre/error.h"
#include "ilre/export.h"
#include "ilre/version.h"

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
class ILRE_API CancelHandle {
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
  // Leave the document open at the end: the tokenizer's held-back text and the tokens short of a whole
  // prefill chunk are kept in the store, so the next append continues the same token stream exactly.
  // false (default): the document is finished at the end of this call (the CLI's ingest without --keep-open).
  bool keep_open = false;
  // All or nothing: an ingest that fails, is cancelled or is killed leaves the store exactly as it was
  // before the call (a daemon's upload that breaks off). Readers see the whole ingest or none of it.
  bool atomic = false;
  // Sharded ingest of a file (ingest_file, a new store): the document is cut into `shards` ranges of whole
  // store segments, ingested at once by that many pipelines (the engine's threads shared among them) into
  // shard stores beside store_dir, and merged. The keys, tokens and state are bit-identical to those of a
  // sequential ingest; each shard re-reads the document and streams a few thousand tokens before its range
  // (the Λ mask's receptive field). 1: sequential.
  int shards = 1;
  // One shard of a sharded ingest run elsewhere (another process or machine): ingest only shard
  // `shard_index` of `shard_count` into store_dir, to be merged by Engine::merge_shards. 0: not a shard.
  int shard_index = 0;
  int shard_count = 0;
  ProgressFn on_progress;       // called a few times a second
  CancelHandle cancel;
};

// A pull source of document text (a socket, a decompressor): fills up to `capacity` bytes and returns
// how many, 0 at the end, or -1 when nothing is available yet (it is called again soon; block a few
// milliseconds at most, so cancels are noticed). An error stops the ingest.
using TextReader = std::function<Result<int64_t>(char* buffer, int64_t capacity)>;

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

// Per-call overrides of the config's sampling settings (decode.*): a server takes them from each request.
// Unset fields keep the engine's config.
struct SamplingOverrides {
  std::optional<int32_t> max_tokens;
  std::optional<float> temperature;
  std::optional<float> top_p;
  std::optional<int32_t> top_k;
  std::optional<uint64_t> seed;
};

struct AskOptions {
  ProgressFn on_progress;
  // Each generated piece of text as soon as it is sampled; return false to stop generating. Pieces are
  // whole UTF-8 characters (a character split across tokens arrives in the piece that completes it).
  std::function<bool(std::string_view piece)> on_token;
  CancelHandle cancel;
  SamplingOverrides sampling;
  std::optional<int64_t> budget;  // recall budget in tokens (recall.budget)
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
  std::string finish_reason;                       // "stop" (end of answer) or "length" (max_tokens)
  bool dca = false;                                // the final pass ran with dual chunk attention (decode.dca)
};

// What the pipelines' stages have done since the engine opened (for a server's /metrics): busy time of
// finished runs (monotonic) and the messages waiting in the running ones' queues now.
struct StageStats {
  std::string stage;            // "read", "tokenize", "prefill", "spill", "score", "pool", "recall", "decode"
  double busy_seconds = 0;      // summed over finished runs
  uint64_t items_out = 0;       // summed over finished runs (bytes, tokens, pieces: the stage's unit)
  uint64_t queue_depth = 0;     // messages waiting now, over running pipelines
  int64_t running = 0;          // running pipelines that have this stage
};

// The loaded model, as a server lists it.
struct ModelInfo {
  std::string name;          // general.name, else the file name
  std::string file;          // path of the GGUF
  std::string architecture;  // "gemma3", "llama"
  std::string fingerprint;
  int64_t context_length = 0;  // trained context (tokens)
  int64_t vocab_size = 0;
  int32_t n_layer = 0;
  int32_t retrieval_layer = -1;
  bool chat_template = false;  // the GGUF carries a chat template (else the architecture's default is used)
};

struct ChatMessage {
  std::string role;  // "system", "user", "assistant"
  std::string content;
};

// A direct completion: the prompt through the whole model, no retrieval (it must fit the context).
struct GenerateOptions {
  SamplingOverrides sampling;   // max_tokens unset: until the end of the text or the context is full
  std::vector<std::string> stop;  // the text ends before the first of these; it is not returned
  ProgressFn on_progress;       // phase "prefill-prompt" while the prompt is read
  std::function<bool(std::string_view piece)> on_token;  // as AskOptions::on_token
  CancelHandle cancel;
};

struct Completion {
  std::string text;
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  std::string finish_reason;    // "stop" (end of text or a stop string) or "length"
  std::map<std::string, double> timings_ms;  // "prompt", "generate", "ttft", "total"
  bool dca = false;             // the sequence ran past the trained context with dual chunk attention
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
  uint64_t bytes = 0;           // document text ingested (UTF-8 bytes as received)
  bool resumable = false;       // holds the streaming state, so --append can continue it
  bool open = false;            // an open document stream: a tail waits for the next append or close
  int64_t pending_tokens = 0;   // tokens of that tail (not yet in the keys; asks see the keys only)
  std::string created_at, updated_at;  // ISO 8601 UTC
};

class DocumentStream;

class ILRE_API Engine : public std::enable_shared_from_this<Engine> {
 public:
  // Validates the config, loads the model (lookup: config path, $ILRE_MODEL, models/, tests/data/models/),
  // starts the thread pools.
  static Result<std::shared_ptr<Engine>> open(Config config);
  ~Engine();

  const Config& config() const;
  std::string model_name() const;
  // l_R the engine uses: config, else configs/models/<model>.yaml (from `ilre calibrate`), else n_layer/4.
  int32_t retrieval_layer() const;
  // Recall budget in tokens for a query of n_query tokens (config or 75% of the trained context).
  int64_t recall_budget(int64_t n_query) const;
  ModelInfo model_info() const;
  std::vector<StageStats> stage_stats() const;

  // Text -> token ids as the model's tokenizer makes them (BOS as its metadata says). parse_special: text
  // such as "<start_of_turn>" becomes that special token (chat prompts).
  Result<std::vector<int32_t>> tokenize(std::string_view text, bool parse_special = false) const;
  // The conversation in the model's chat template (from the GGUF), ending where the reply starts. The
  // text contains special-token text: tokenize it with parse_special.
  Result<std::string> chat_prompt(const std::vector<ChatMessage>& messages) const;
  // Runs prompt (token ids) through the whole model and samples a continuation. Errors with out_of_range
  // when the prompt does not fit the trained context; the answer stops when the context is full.
  Result<Completion> complete(const std::vector<int32_t>& prompt, GenerateOptions options);

  // path "-" reads stdin.
  Result<IngestReport> ingest_file(const std::string& path, const std::string& store_dir, IngestOptions options);
  Result<IngestReport> ingest_text(std::string text, const std::string& store_dir, IngestOptions options);
  // A stream the caller owns (a socket buffer, a decompressor); read until EOF.
  Result<IngestReport> ingest(std::istream& document, const std::string& store_dir, IngestOptions options);
  // Joins the stores of IngestOptions::shard_index 0..K-1 of one document, given in that order, into one
  // store at store_dir (which must not exist or be empty; nothing is left there on error). Refuses shards
  // of other documents, models, layers or key-shaping settings, and a missing or repeated shard.
  Result<IngestReport> merge_shards(const std::vector<std::string>& shard_dirs, const std::string& store_dir);
  // Opens a store's manifest (no keys are read) and checks it was made with this engine's model.
  Result<Store> open_store(const std::string& store_dir) const;
  // Asks over the snapshot of the store at the moment of the call (an append running meanwhile is not
  // seen; its completed predecessors are).
  Result<Answer> ask(const std::string& store_dir, const std::string& question, AskOptions options);
  Result<Answer> ask(const Store& store, const std::string& question, AskOptions options);

  // Opens a document stream on store_dir, creating an empty store if there is none; an existing store
  // must come from this model. Several streams on one store at once are refused (the writer lock).
  Result<std::unique_ptr<DocumentStream>> open_stream(const std::string& store_dir);

  struct Impl;

 private:
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// A growing document: text appended in parts of any size and split anywhere is one document. Each append
// returns once its text is durable in the store (the keys of its whole chunks, and the tail). Destroying an
// open stream keeps the document open in the store (open_stream continues it, in this or another process).
// Thread-safety: append and close may be called from any thread; they are serialised internally. Asks
// on the store from other threads see the state after the last completed append.
class ILRE_API DocumentStream {
 public:
  ~DocumentStream();
  DocumentStream(const DocumentStream&) = delete;
  DocumentStream& operator=(const DocumentStream&) = delete;

  const std::string& dir() const;
  Result<IngestReport> append(std::string_view text, IngestOptions options = {});
  Result<IngestReport> append(std::istream& text, IngestOptions options = {});
  Result<IngestReport> append(TextReader reader, IngestOptions options = {});
  // Finishes the document: the held-back tail is tokenised (EOS if the model adds one) and prefilled.
  // Appending after close continues the document with a fresh tokenizer (as the CLI's --append).
  Result<IngestReport> close(IngestOptions options = {});
  bool closed() const;

  struct Impl;
  explicit DocumentStream(std::unique_ptr<Impl> impl);

 private:
  std::unique_ptr<Impl> impl_;
};

// Peak resident set size of this process in MiB (VmHWM).
ILRE_API double peak_rss_mb();

}  // namespace ilre
