// Embedding ilre: ingest a document into a store, ask several questions with streaming tokens, cancel one
// of them from another thread, and append to the document while another thread asks.
//
//   embed <model.gguf> <document.txt> <store dir> [setting=value ...]
//
// Settings are configs/reference.yaml keys ("recall.budget=2048"). Prints one JSON-ish line per step and
// exits non-zero on any unexpected result, so CI can run it.
#include <ilre/engine.h>
#include <ilre/openai.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>

namespace {

int fail(const std::string& what, const ilre::Error& e) {
  std::fprintf(stderr, "embed: %s: %s\n", what.c_str(), e.what().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: embed <model.gguf> <document.txt> <store dir> [key=value ...]\n");
    return 2;
  }
  std::printf("ilre %s (ILRE_VERSION %d)\n", ILRE_VERSION_STRING, ILRE_VERSION);
  ilre::Config config;
  config.model.path = argv[1];
  for (int i = 4; i < argc; ++i) {
    if (auto r = ilre::apply_override(config, argv[i]); !r) return fail("setting", r.error());
  }
  auto opened = ilre::Engine::open(config);
  if (!opened) return fail("open", opened.error());
  std::shared_ptr<ilre::Engine> engine = *opened;
  std::printf("model %s, l_R %d\n", engine->model_name().c_str(), engine->retrieval_layer());

  // 1. Ingest the file, with progress.
  ilre::IngestOptions ingest;
  int64_t progress_calls = 0;
  ingest.on_progress = [&](const ilre::Progress&) { ++progress_calls; };
  auto report = engine->ingest_file(argv[2], argv[3], ingest);
  if (!report) return fail("ingest", report.error());
  std::printf("ingested %lld tokens, %.0f tok/s, peak RSS %.1f MB, %lld progress reports\n",
              static_cast<long long>(report->total_tokens), report->tokens_per_second, report->peak_rss_mb,
              static_cast<long long>(progress_calls));

  // 2. Several questions over the same store, tokens streamed as they are generated.
  const char* questions[] = {"What is the secret ingredient?", "Who went to the park?", "What did Tom have?"};
  for (const char* q : questions) {
    std::string streamed;
    ilre::AskOptions ask;
    ask.on_token = [&](std::string_view piece) {
      streamed += piece;
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      return true;
    };
    std::printf("Q: %s\nA: ", q);
    auto answer = engine->ask(argv[3], q, ask);
    if (!answer) return fail("ask", answer.error());
    std::printf("\n   (%lld of %lld tokens recalled in %zu spans, first token after %.0f ms)\n",
                static_cast<long long>(answer->recalled), static_cast<long long>(answer->context_tokens),
                answer->spans.size(), answer->timings_ms["ttft"]);
    if (streamed != answer->text) {
      std::fprintf(stderr, "embed: streamed tokens differ from the answer text\n");
      return 1;
    }
  }

  // 3. Cancel an ask from another thread as soon as it produces its first token.
  {
    ilre::AskOptions ask;
    std::atomic<bool> first_token{false};
    ask.on_token = [&](std::string_view) {
      first_token.store(true);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // leave the canceller time to act
      return true;
    };
    ilre::CancelHandle cancel = ask.cancel;
    std::thread canceller([&] {
      while (!first_token.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      cancel.cancel("cancelled by the example");
    });
    auto answer = engine->ask(argv[3], "Tell me everything about the harbour.", ask);
    canceller.join();
    if (answer || answer.error().code != ilre::errc::cancelled) {
      std::fprintf(stderr, "embed: the cancelled ask did not report cancellation\n");
      return 1;
    }
    std::printf("cancelled ask: %s\n", answer.error().what().c_str());
  }

  // 4. A document stream: append in parts while another thread asks (each ask sees a snapshot).
  {
    const std::string stream_dir = std::string(argv[3]) + "-stream";
    auto stream = engine->open_stream(stream_dir);
    if (!stream) return fail("open_stream", stream.error());
    std::ifstream in(argv[2], std::ios::binary | std::ios::ate);
    const auto file_size = static_cast<size_t>(in.tellg());
    in.seekg(0);
    std::atomic<bool> done{false};
    std::atomic<int> asks{0};
    std::atomic<bool> ask_failed{false};
    std::thread asker([&] {
      while (!done.load()) {
        auto a = engine->ask(stream_dir, "Who went to the park?", {});
        // Before the first whole chunk of keys the store holds no tokens yet: that is the only allowed error.
        if (!a && a.error().code != ilre::errc::invalid_argument) {
          std::fprintf(stderr, "embed: ask during append: %s\n", a.error().what().c_str());
          ask_failed.store(true);
          return;
        }
        if (a) ++asks;
      }
    });
    // Five parts read one at a time (cut anywhere, even inside a character): memory holds one part.
    const size_t part_size = file_size / 5 + 1;
    std::string part(part_size, '\0');
    while (in.read(part.data(), static_cast<std::streamsize>(part_size)) || in.gcount() > 0) {
      auto r = (*stream)->append(std::string_view(part.data(), static_cast<size_t>(in.gcount())));
      if (!r) {
        done.store(true);
        asker.join();
        return fail("append", r.error());
      }
    }
    auto closed = (*stream)->close();
    done.store(true);
    asker.join();
    if (!closed) return fail("close", closed.error());
    if (ask_failed.load()) return 1;
    std::printf("stream: %lld tokens in 5 parts (whole-file ingest: %lld), %d asks answered during the appends\n",
                static_cast<long long>(closed->total_tokens), static_cast<long long>(report->total_tokens), asks.load());
    if (closed->total_tokens != report->total_tokens) {
      std::fprintf(stderr, "embed: the parts do not add up to the whole document\n");
      return 1;
    }
  }
  // 5. An OpenAI chat request answered over the stored document, as the daemon answers it.
  {
    ilre::openai::RequestContext ctx;
    const std::string store = argv[3];
    ctx.document_store = [&store](const std::string&) -> ilre::Result<std::string> { return store; };
    const auto r = ilre::openai::chat_completions(
        *engine, R"({"messages":[{"role":"user","content":"Who went to the park?"}],"ilre":{"document":"book"}})", ctx);
    if (r.status != 200) {
      std::fprintf(stderr, "embed: chat completion: %d %s\n", r.status, r.body.c_str());
      return 1;
    }
    std::printf("openai: %.120s\n", r.body.c_str());
  }
  std::printf("peak RSS %.1f MB\n", ilre::peak_rss_mb());
  return 0;
}
