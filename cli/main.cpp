#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdio>

#include "commands.h"
#include "ilre/error.h"
#include "ilre/version.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace {

// Ingest must run in constant memory. glibc's dynamic mmap threshold rises after the first large block is
// freed; later large blocks (activation and key buffers of a few hundred KB) then come from per-thread
// arenas and fragment them: RSS crept up ~2 MB per million tokens (stories260K: 19.4 MB at 64K tokens,
// 21.6 MB at 1M) while the heap stayed flat at 10 MB (heaptrack). A fixed threshold keeps them in mmap:
// 18.9 MB at 64K, 19.6 MB at 1M. It costs ~12% of Gemma 3 270M's ingest rate in mmap/munmap system time
// (2,238 vs 2,531 tokens/s at 100K tokens, RSS 172 vs 187 MB); constant memory is the product's promise.
// Embedders with long ingests may want the same for their process.
void use_constant_memory_allocator_policy() {
#if defined(__GLIBC__)
  mallopt(M_MMAP_THRESHOLD, 128 * 1024);
#endif
}

}  // namespace

int main(int argc, char** argv) {
  use_constant_memory_allocator_policy();
  CLI::App app{"ilre — answers questions about very long documents with a local LLM (Intermediate Layer Retrieval)"};
  app.require_subcommand(1);
  app.fallthrough();  // --log-level may follow the sub-command
  app.set_version_flag("--version", "ilre " ILRE_VERSION_STRING);
  std::string log_level = "warn";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")->capture_default_str();
  app.parse_complete_callback([&] { spdlog::set_level(spdlog::level::from_str(log_level)); });
  spdlog::set_pattern("%^[%l]%$ %v");
  ilre::cli::register_ilre_commands(app);
  ilre::cli::register_eval_commands(app);
  ilre::cli::register_model_commands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const ilre::Exception& e) {
    std::fprintf(stderr, "ilre: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ilre: internal error: %s\n", e.what());
    return 2;
  }
  return 0;
}
