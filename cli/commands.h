// Sub-commands of the ilre command-line program. Each registers its options on the app and runs when
// selected; errors propagate as ilre::Exception to main(), which prints them and sets the exit code.
#pragma once

#include <CLI/CLI.hpp>

namespace ilre::cli {

void register_model_commands(CLI::App& app);  // info, tokenize, generate, logits
void register_ilre_commands(CLI::App& app);   // ingest, ask
void register_eval_commands(CLI::App& app);   // calibrate, eval
void register_serve_command(CLI::App& app);   // serve (the daemon)
void register_batch_command(CLI::App& app);   // batch run|status|merge

}  // namespace ilre::cli
