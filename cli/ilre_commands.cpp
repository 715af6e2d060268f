// ingest and ask: thin clients of ilre::Engine.
#include <signal.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>
#include <tuple>

#include "api/json.h"
#include "commands.h"
#include "interrupt.h"
#include "options.h"
#include "ilre/config.h"
#include "ilre/engine.h"

namespace fs = std::filesystem;

namespace ilre::cli {
namespace {

std::shared_ptr<Engine> open_engine(const Config& cfg) {
  auto e = Engine::open(cfg);
  if (!e) throw Exception(e.error());
  return *e;
}

// A one-line progress bar on stderr when it is a terminal: bytes, tokens, tokens/s, ETA.
class ProgressBar {
 public:
  ProgressBar() : enabled_(::isatty(STDERR_FILENO) != 0) {}
  void update(const Progress& p) {
    if (!enabled_) return;
    const double s = p.elapsed_ms / 1000.0;
    const double tps = s > 0 ? static_cast<double>(p.tokens) / s : 0.0;
    char line[256];
    if (p.phase == "ingest" && p.total > 0) {
      const double frac = std::min(1.0, static_cast<double>(p.processed) / static_cast<double>(p.total));
      const double eta = frac > 0.001 ? s * (1.0 - frac) / frac : 0.0;
      const int filled = static_cast<int>(frac * 30);
      std::snprintf(line, sizeof(line), "\r[%.*s%*s] %5.1f%%  %lld tokens  %.0f tok/s  ETA %.0fs   ", filled,
                    "##############################", 30 - filled, "", frac * 100, static_cast<long long>(p.tokens), tps, eta);
    } else if (p.phase == "ingest") {
      std::snprintf(line, sizeof(line), "\r%lld bytes  %lld tokens  %.0f tok/s   ", static_cast<long long>(p.processed),
                    static_cast<long long>(p.tokens), tps);
    } else {
      std::snprintf(line, sizeof(line), "\r%s %lld/%lld   ", p.phase.c_str(), static_cast<long long>(p.processed),
                    static_cast<long long>(p.total));
    }
    std::fputs(line, stderr);
    drawn_ = true;
  }
  ~ProgressBar() {
    if (drawn_) std::fputs("\n", stderr);
  }

 private:
  bool enabled_;
  bool drawn_ = false;
};

struct IngestArgs {
  std::string doc;
  std::string store;
  bool append = false;
  bool keep_open = false;
  bool close = false;
  int shards = 1;
  std::string shard{};  // "i/K"
};

// "--shard i/K": shard i (0-based) of K.
std::pair<int, int> parse_shard(const std::string& spec) {
  int i = -1, k = 0;
  char slash = 0, extra = 0;
  if (std::sscanf(spec.c_str(), "%d %c %d %c", &i, &slash, &k, &extra) != 3 || slash != '/' || k < 1 || i < 0 || i >= k) {
    throw CLI::ValidationError("--shard", "expected i/K with 0 <= i < K (e.g. 0/4), not '" + spec + "'");
  }
  return {i, k};
}

IngestReport run_ingest(Engine& engine, const IngestArgs& args) {
  IngestOptions opt;
  opt.append = args.append;
  opt.keep_open = args.keep_open;
  opt.shards = args.shards;
  if (!args.shard.empty()) std::tie(opt.shard_index, opt.shard_count) = parse_shard(args.shard);
  ProgressBar bar;
  opt.on_progress = [&](const Progress& p) { bar.update(p); };
  InterruptGuard guard(opt.cancel);
  Result<IngestReport> r = make_error(errc::internal, "no ingest ran");
  if (args.close) {
    auto stream = engine.open_stream(args.store);
    if (!stream) throw Exception(stream.error());
    r = (*stream)->close(opt);
  } else {
    r = engine.ingest_file(args.doc, args.store, opt);
  }
  if (!r) throw Exception(r.error());
  return *r;
}

void register_ingest(CLI::App& app) {
  auto* cmd = app.add_subcommand("ingest", "Stream a document through the first l_R layers into a key store");
  auto a = std::make_shared<CommonArgs>();
  auto in = std::make_shared<IngestArgs>();
  add_common(cmd, *a);
  auto* doc_opt = cmd->add_option("--doc", in->doc, "document file, or - for stdin");
  cmd->add_option("--store", in->store, "store directory to create (or continue with --append)")->required();
  cmd->add_flag("--append", in->append, "add the text to an existing store (a document stream)");
  cmd->add_flag("--keep-open", in->keep_open,
                "leave the document open: the next --append continues the same token stream, so parts split "
                "anywhere give exactly the tokens of the whole text (finish with a last --append without it, or --close)");
  auto* close_opt = cmd->add_flag("--close", in->close, "finish an open document (no --doc)");
  close_opt->excludes(doc_opt);
  auto* shards_opt = cmd->add_option("--shards", in->shards,
                                     "ingest with K pipelines at once, each on threads/K cores, and merge: the same "
                                     "store as one pipeline makes, bit for bit")
                         ->check(CLI::Range(1, 64));
  cmd->add_option("--shard", in->shard,
                  "ingest only shard i of K (i/K, 0-based) into --store, e.g. one per machine; join them with `ilre merge`")
      ->excludes(shards_opt);
  cmd->callback([=] {
    if (!in->close && in->doc.empty()) throw CLI::RequiredError("--doc");
    const Config cfg = resolve_config(*a);
    auto engine = open_engine(cfg);
    const IngestReport r = run_ingest(*engine, *in);
    if (a->json) {
      std::cout << api::dump(api::to_json(r), 2) << "\n";
    } else {
      std::fprintf(stderr, "ingested %lld tokens (%lld in store) at layer %d: %.0f tok/s, keys %.2fx smaller on disk, peak RSS %.0f MB\n",
                   static_cast<long long>(r.tokens_added), static_cast<long long>(r.total_tokens), r.layer,
                   r.tokens_per_second, r.key_compression_ratio, r.peak_rss_mb);
    }
  });
}

void register_merge(CLI::App& app) {
  auto* cmd = app.add_subcommand("merge", "Join the shard stores of `ilre ingest --shard i/K` (i = 0..K-1, in order) into one store");
  auto a = std::make_shared<CommonArgs>();
  auto store = std::make_shared<std::string>();
  auto shards = std::make_shared<std::vector<std::string>>();
  add_common(cmd, *a);
  cmd->add_option("--store", *store, "store directory to create")->required();
  cmd->add_option("shards", *shards, "shard stores 0..K-1, in order")->required();
  cmd->callback([=] {
    auto engine = open_engine(resolve_config(*a));
    auto r = engine->merge_shards(*shards, *store);
    if (!r) throw Exception(r.error());
    if (a->json) {
      std::cout << api::dump(api::to_json(*r), 2) << "\n";
    } else {
      std::fprintf(stderr, "merged %zu shards: %lld tokens in %lld segments at layer %d\n", shards->size(),
                   static_cast<long long>(r->total_tokens), static_cast<long long>(r->segments_added), r->layer);
    }
  });
}

void register_ask(CLI::App& app) {
  auto* cmd = app.add_subcommand("ask", "Answer a question about a stored (or given) document");
  auto a = std::make_shared<CommonArgs>();
  auto doc = std::make_shared<std::string>();
  auto store = std::make_shared<std::string>();
  auto question = std::make_shared<std::string>();
  add_common(cmd, *a);
  cmd->add_option("-q,--question", *question, "the question")->required();
  cmd->add_option("--store", *store, "store made by `ilre ingest`");
  cmd->add_option("--doc", *doc, "document to ingest first (into --store, or a temporary store)");
  cmd->callback([=] {
    if (store->empty() && doc->empty()) throw Exception(errc::invalid_argument, "ask needs --store or --doc");
    const Config cfg = resolve_config(*a);
    auto engine = open_engine(cfg);
    std::string dir = *store;
    bool temporary = false;
    if (!doc->empty()) {
      if (dir.empty()) {
        dir = (fs::temp_directory_path() / ("ilre-store-" + std::to_string(::getpid()))).string();
        fs::remove_all(dir);
        temporary = true;
      }
      run_ingest(*engine, IngestArgs{.doc = *doc, .store = dir});
    }
    struct Cleanup {
      std::string dir;
      bool on;
      ~Cleanup() {
        if (on) fs::remove_all(dir);
      }
    } cleanup{dir, temporary};

    AskOptions opt;
    InterruptGuard guard(opt.cancel);
    if (!a->json) {
      opt.on_token = [](std::string_view piece) {
        std::fwrite(piece.data(), 1, piece.size(), stdout);
        std::fflush(stdout);
        return true;
      };
    }
    auto r = engine->ask(dir, *question, opt);
    if (!r) throw Exception(r.error());
    if (a->json) {
      std::cout << api::dump(api::to_json(*r), 2) << "\n";
    } else {
      std::fputs("\n", stdout);
      spdlog::info("recalled {} of {} tokens in {} spans at layer {}; first token after {:.0f} ms", r->recalled,
                   r->context_tokens, r->spans.size(), r->layer, r->timings_ms["ttft"]);
      if (!r->compressed) spdlog::info("the document fitted the recall budget: it was not compressed");
    }
  });
}

}  // namespace

void register_ilre_commands(CLI::App& app) {
  register_ingest(app);
  register_merge(app);
  register_ask(app);
}

}  // namespace ilre::cli
