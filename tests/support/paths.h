// Where tests find their inputs: the shared read-only folder, the default model, a scratch directory.
#pragma once

#include <optional>
#include <string>

namespace ilre::test {

// ../shared beside the checkout (or $ILRE_SHARED).
std::string shared_dir();
// tests/data inside the checkout.
std::string data_dir();
// A model from ../shared/models by file name; the test fails (not skips) if it is absent, because CI has it.
std::string shared_model(const std::string& file_name);
// Gemma 3 270M Q4_K_M from $ILRE_GEMMA_MODEL or models/; nullopt if not fetched (tests then skip).
std::optional<std::string> gemma_model();
// A fresh empty directory under the build tree, unique per call.
std::string scratch_dir(const std::string& tag);

}  // namespace ilre::test
