#include "support/paths.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>

namespace fs = std::filesystem;

namespace ilre::test {

std::string shared_dir() {
  if (const char* env = std::getenv("ILRE_SHARED")) return env;
  return (fs::path(ILRE_SOURCE_DIR) / ".." / "shared").lexically_normal().string();
}

std::string data_dir() { return (fs::path(ILRE_SOURCE_DIR) / "tests" / "data").string(); }

std::string shared_model(const std::string& file_name) {
  const fs::path p = fs::path(shared_dir()) / "models" / file_name;
  EXPECT_TRUE(fs::exists(p)) << "missing shared model " << p;
  return p.string();
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
