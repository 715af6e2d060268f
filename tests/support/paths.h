// Where tests find their inputs: the repository's tests/data (models, tokenizer vectors, golden logits), the
// default model, a scratch directory. Nothing here looks outside the checkout: a bare clone tests itself.
#pragma once

#include <optional>
#include <string>

namespace ilre::test {

// tests/data inside the checkout (see tests/data/README.md for what each file is and where it came from).
std::string data_dir();
// A tiny model from tests/data/models by file name; the test fails (not skips) if it is absent.
std::string data_model(const std::string& file_name);
// The contents of a file under tests/data; a name ending in .zst is decompressed (zstd frame).
std::string read_data_file(const std::string& relative_path);
// Gemma 3 270M Q4_K_M from $ILRE_GEMMA_MODEL or models/; nullopt if not fetched (tests then skip).
std::optional<std::string> gemma_model();
// A fresh empty directory under the build tree, unique per call.
std::string scratch_dir(const std::string& tag);

}  // namespace ilre::test
