#include "support/paths.h"

#include <gtest/gtest.h>
#include <unistd.h>
#include <zstd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace fs = std::filesystem;

namespace ilre::test {

std::string data_dir() { return (fs::path(ILRE_SOURCE_DIR) / "tests" / "data").string(); }

std::string data_model(const std::string& file_name) {
  const fs::path p = fs::path(data_dir()) / "models" / file_name;
  EXPECT_TRUE(fs::exists(p)) << "missing test model " << p;
  return p.string();
}

std::string read_data_file(const std::string& relative_path) {
  const fs::path p = fs::path(data_dir()) / relative_path;
  std::ifstream in(p, std::ios::binary);
  EXPECT_TRUE(in) << "missing test data " << p;
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (p.extension() != ".zst") return bytes;
  const unsigned long long size = ZSTD_getFrameContentSize(bytes.data(), bytes.size());
  if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN) {
    ADD_FAILURE() << p << " is not a zstd frame that records its content size";
    return {};
  }
  std::string out(static_cast<size_t>(size), '\0');
  const size_t got = ZSTD_decompress(out.data(), out.size(), bytes.data(), bytes.size());
  if (ZSTD_isError(got) || got != out.size()) {
    ADD_FAILURE() << p << ": " << (ZSTD_isError(got) ? ZSTD_getErrorName(got) : "short frame");
    return {};
  }
  return out;
}

std::optional<std::string> gemma_model() {
  if (const char* env = std::getenv("ILRE_GEMMA_MODEL")) {
    if (fs::exists(env)) return std::string(env);
  }
  const fs::path p = fs::path(ILRE_SOURCE_DIR) / "models" / "gemma-3-270m-q4_k_m.gguf";
  if (fs::exists(p)) return p.string();
  return std::nullopt;
}

std::string scratch_dir(const std::string& tag) {
  static std::atomic<int> counter{0};
  const fs::path p = fs::path(ILRE_BINARY_DIR) / "test-scratch" /
                     (tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

}  // namespace ilre::test
