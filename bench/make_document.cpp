// Writes a generated long document of about N tokens for a model (varied prose from eval/haystack, no
// needles unless asked for), for the ingest benchmarks and needle experiments.
//
//   make_document --model=path.gguf --tokens=1048576 --out=doc.txt [--seed=1] [--needle=DEPTH:SENTENCE ...]
//
// Prints the token range [start, end) of every needle.
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "eval/haystack.h"
#include "model/model.h"
#include "model/gguf/model_path.h"

int main(int argc, char** argv) {
  std::string model_arg, out;
  int64_t tokens = 65536;
  uint64_t seed = 1;
  std::vector<ilre::eval::Needle> needles;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--model=", 0) == 0) model_arg = a.substr(8);
    else if (a.rfind("--tokens=", 0) == 0) tokens = std::stoll(a.substr(9));
    else if (a.rfind("--out=", 0) == 0) out = a.substr(6);
    else if (a.rfind("--seed=", 0) == 0) seed = std::stoull(a.substr(7));
    else if (a.rfind("--needle=", 0) == 0 && a.find(':') != std::string::npos) {
      const size_t colon = a.find(':');
      needles.push_back({a.substr(colon + 1), std::stod(a.substr(9, colon - 9))});
    }
    else {
      std::fprintf(stderr, "usage: make_document --model=M --tokens=N --out=FILE [--seed=S] [--needle=DEPTH:SENTENCE ...]\n");
      return 2;
    }
  }
  if (out.empty()) {
    std::fprintf(stderr, "make_document: --out is required\n");
    return 2;
  }
  const auto m = ilre::model::Model::load(
      ilre::model::resolve_model_path(model_arg.empty() ? std::nullopt : std::optional(model_arg)));
  const auto hay = ilre::eval::make_haystack(m->vocab(), tokens, needles, seed);
  std::ofstream f(out, std::ios::binary | std::ios::trunc);
  f << hay.text;
  if (!f.flush()) {
    std::fprintf(stderr, "make_document: cannot write %s\n", out.c_str());
    return 1;
  }
  std::printf("%s: %lld tokens, %zu bytes\n", out.c_str(), static_cast<long long>(hay.n_tokens), hay.text.size());
  for (size_t i = 0; i < needles.size(); ++i) {
    std::printf("needle %zu at depth %.2f: tokens [%lld, %lld)\n", i, needles[i].depth,
                static_cast<long long>(hay.needle_tokens[i].first), static_cast<long long>(hay.needle_tokens[i].second));
  }
  return 0;
}
