// Where a model file is found: --model, $ILRE_MODEL, models/, ../shared/models/ — the same order in the
// CLI, the daemon and the library.
#pragma once

#include <optional>
#include <string>

namespace ilre::model {

inline constexpr const char* kDefaultModelFile = "gemma-3-270m-q4_k_m.gguf";

// requested: a path, or a bare file name (".gguf" optional) looked up in the model folders; nullopt for
// the default. Throws Exception(io_failed) listing every place tried when nothing is found.
std::string resolve_model_path(const std::optional<std::string>& requested);

}  // namespace ilre::model
