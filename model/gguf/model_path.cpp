#include "model/gguf/model_path.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <vector>

#include "ilre/error.h"

namespace fs = std::filesystem;

namespace ilre::model {

namespace {

// The file this code was loaded from: libilre.so for an embedder, the program itself when linked statically.
fs::path this_image() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<const void*>(&search_roots), &info) != 0 && info.dli_fname != nullptr) {
    std::error_code ec;
    const fs::path p = fs::canonical(info.dli_fname, ec);
    if (!ec) return p;
  }
  std::error_code ec;
  return fs::read_symlink("/proc/self/exe", ec);
}

void add_root(std::vector<fs::path>& roots, const fs::path& p) {
  std::error_code ec;
  for (const fs::path& r : roots) {
    if (fs::equivalent(r, p, ec)) return;
  }
  roots.push_back(p);
}

}  // namespace

// build/cli/ilre -> ../../ : so `./build/cli/ilre` finds models/ and configs/ from any directory; an
// installed bin/ilre or lib/libilre.so -> ../share/ilre (configs/ with the calibrated l_R, models/).
std::vector<fs::path> search_roots() {
  std::vector<fs::path> roots{fs::current_path()};
  std::error_code ec;
  const fs::path image = this_image();
  if (image.empty()) return roots;
  for (fs::path p = image.parent_path(); !p.empty() && p != p.root_path(); p = p.parent_path()) {
    if (fs::exists(p / "CMakeLists.txt", ec) && fs::exists(p / "model", ec)) {
      add_root(roots, p);
      break;
    }
  }
  const fs::path installed = image.parent_path().parent_path() / "share" / "ilre";
  if (fs::is_directory(installed, ec)) add_root(roots, installed);
  return roots;
}

namespace {

// models/ (fetched models) and tests/data/models/ (the tiny test models in the repository) relative to the
// working directory, then relative to the project a binary was built in.
std::vector<fs::path> model_folders() {
  const std::vector<fs::path> roots = search_roots();
  std::vector<fs::path> folders;
  for (const fs::path& r : roots) folders.push_back(r / "models");
  for (const fs::path& r : roots) folders.push_back(r / "tests" / "data" / "models");
  return folders;
}

}  // namespace

std::string resolve_model_path(const std::optional<std::string>& requested) {
  std::optional<std::string> want = requested;
  if (!want) {
    if (const char* env = std::getenv("ILRE_MODEL"); env != nullptr && *env != '\0') want = env;
  }
  std::vector<std::string> tried;
  if (want) {
    if (fs::is_regular_file(*want)) return *want;
    tried.push_back(*want);
  }
  std::string name = want ? fs::path(*want).filename().string() : kDefaultModelFile;
  if (name.size() < 5 || name.substr(name.size() - 5) != ".gguf") name += ".gguf";
  for (const fs::path& folder : model_folders()) {
    const fs::path candidate = (folder / name).lexically_normal();
    if (fs::is_regular_file(candidate)) return candidate.string();
    tried.push_back(candidate.string());
  }
  std::string msg = "model not found; tried:";
  for (const std::string& t : tried) msg += "\n  " + t;
  if (!want) msg += "\nfetch the default model with scripts/fetch-model.sh, or pass --model / set ILRE_MODEL";
  throw Exception(errc::io_failed, msg);
}

}  // namespace ilre::model
