// Options every ILRe command shares (model, config file, overrides, l_R, budget, --json) and how they
// become one Config: config file < ILRE_* environment < --set < dedicated flags.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ilre/config.h"

namespace ilre::cli {

struct CommonArgs {
  std::string config_file;
  std::vector<std::string> sets;
  std::optional<std::string> model;
  std::optional<int> threads;
  std::optional<int> layer;
  std::optional<int64_t> budget;
  bool json = false;
};

void add_common(CLI::App* cmd, CommonArgs& a);

// Throws ilre::Exception on a bad file, override or value.
Config resolve_config(const CommonArgs& a);

}  // namespace ilre::cli
