// Where a model file is found: --model, $ILRE_MODEL, models/, tests/data/models/ — the same order in the
// CLI, the daemon and the library.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace ilre::model {

inline constexpr const char* kDefaultModelFile = "gemma-3-270m-q4_k_m.gguf";

// The working directory, then the source tree the running binary was built in (if any): where models/
// and configs/ are looked up.
std::vector<std::filesystem::path> search_roots();

// requested: a path, or a bare file name (".gguf" optional) looked up in the model folders; nullopt for
// the default. Throws Exception(io_failed) listing every place tried when nothing is found.
std::string resolve_model_path(const std::optional<std::string>& requested);

}  // namespace ilre::model
