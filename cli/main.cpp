#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdio>

#include "commands.h"
#include "ilre/error.h"
#include "ilre/version.h"

int main(int argc, char** argv) {
  CLI::App app{"ilre — answers questions about very long documents with a local LLM (Intermediate Layer Retrieval)"};
  app.require_subcommand(1);
  app.fallthrough();  // --log-level may follow the sub-command
  app.set_version_flag("--version", "ilre " ILRE_VERSION_STRING);
  std::string log_level = "warn";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")->capture_default_str();
  app.parse_complete_callback([&] { spdlog::set_level(spdlog::level::from_str(log_level)); });
  // Logs go to stderr: stdout carries only results (answers, JSON reports), so they can be piped.
  spdlog::set_default_logger(spdlog::stderr_color_mt("ilre"));
  spdlog::set_pattern("%^[%l]%$ %v");
  ilre::cli::register_ilre_commands(app);
  ilre::cli::register_eval_commands(app);
  ilre::cli::register_model_commands(app);
  ilre::cli::register_serve_command(app);
  ilre::cli::register_batch_command(app);
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
