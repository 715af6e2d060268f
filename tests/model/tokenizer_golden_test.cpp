// Tokenisation against llama.cpp's own vectors: the ggml-vocab-*.gguf{.inp,.out} files of llama.cpp's
// test-tokenizer-0 (split exactly as that test splits them), stories260K's recorded prompts, and the Gemma 3
// reference recorded with llama-cpp-python (scripts/make_tokenizer_reference.py).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "model/gguf/gguf.h"
#include "model/tokenizer/vocab.h"
#include "support/paths.h"

namespace ilre::model {
namespace {

namespace fs = std::filesystem;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string unhex(const std::string& h) {
  std::string out;
  for (size_t i = 0; i + 1 < h.size(); i += 2) out.push_back(static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16)));
  return out;
}

struct VocabCase {
  std::string text;
  std::vector<TokenId> ids;
};

// llama.cpp tests/test-tokenizer-0.cpp read_tests(): the .inp file is split at "\n__ggml_vocab_test__\n"
// (a trailing piece after the last separator counts only if non-empty); each .out line is stripped and split
// at single spaces.
std::vector<VocabCase> read_vocab_cases(const std::string& vocab_path) {
  const std::string raw = read_file(vocab_path + ".inp");
  std::vector<std::string> inputs;
  const std::string sep = "\n__ggml_vocab_test__\n";
  size_t pos = 0;
  while (pos < raw.size()) {
    const size_t next = raw.find(sep, pos);
    if (next == std::string::npos) {
      inputs.push_back(raw.substr(pos));
      break;
    }
    inputs.push_back(raw.substr(pos, next - pos));
    pos = next + sep.size();
  }
  std::vector<std::string> lines;
  {
    std::istringstream out(read_file(vocab_path + ".out"));
    for (std::string line; std::getline(out, line);) lines.push_back(line);
  }
  EXPECT_EQ(inputs.size(), lines.size()) << vocab_path;
  std::vector<VocabCase> cases;
  for (size_t i = 0; i < std::min(inputs.size(), lines.size()); ++i) {
    std::string o = lines[i];
    const size_t b = o.find_first_not_of(" \t\r\n");
    const size_t e = o.find_last_not_of(" \t\r\n");
    o = b == std::string::npos ? std::string() : o.substr(b, e - b + 1);
    VocabCase c{inputs[i], {}};
    size_t p = 0;
    while (p < o.size()) {
      size_t q = o.find(' ', p);
      if (q == std::string::npos) q = o.size();
      c.ids.push_back(std::stoi(o.substr(p, q - p)));
      p = q + 1;
    }
    cases.push_back(std::move(c));
  }
  return cases;
}

std::string show(const std::vector<TokenId>& ids) {
  std::string s;
  for (TokenId t : ids) s += std::to_string(t) + " ";
  return s;
}

// Returns the number of mismatching cases (each reported).
// vectors_path: where the .inp/.out files are (default: beside the vocabulary).
int check_vocab_file(const std::string& vocab_path, std::string vectors_path = {}) {
  if (vectors_path.empty()) vectors_path = vocab_path;
  auto file = GgufFile::open(vocab_path);
  auto vocab = Vocab::from_gguf(*file);
  const auto cases = read_vocab_cases(vectors_path);
  EXPECT_GT(cases.size(), 10u);
  int bad = 0;
  for (const auto& c : cases) {
    const auto got = vocab->tokenize(c.text, TokenizeOptions{false, false});
    if (got != c.ids) {
      ++bad;
      ADD_FAILURE() << fs::path(vocab_path).filename() << " input '" << c.text << "'\n  want " << show(c.ids)
                    << "\n  got  " << show(got);
    }
  }
  return bad;
}

// A vocabulary shipped compressed (tests/data/tokenizer/<name>.gguf.zst), written out where the GGUF
// reader can map it; its vectors stay beside the compressed file.
std::string unpacked_vocab(const std::string& name) {
  const std::string path = test::scratch_dir("tokenizer-golden") + "/" + name + ".gguf";
  std::ofstream(path, std::ios::binary | std::ios::trunc) << test::read_data_file("tokenizer/" + name + ".gguf.zst");
  return path;
}

TEST(TokenizerGolden, Qwen2Vectors) {
  EXPECT_EQ(check_vocab_file(unpacked_vocab("ggml-vocab-qwen2"), test::data_dir() + "/tokenizer/ggml-vocab-qwen2.gguf"), 0);
}

TEST(TokenizerGolden, Phi3Vectors) {
  EXPECT_EQ(check_vocab_file(unpacked_vocab("ggml-vocab-phi-3"), test::data_dir() + "/tokenizer/ggml-vocab-phi-3.gguf"), 0);
}

// Llama 3's vocabulary ships with llama.cpp's sources, not with this repository: checked where it is
// installed (/opt/llama-vocab or $ILRE_LLAMA_VOCAB_DIR) against the vectors in shared/golden.
std::optional<std::string> llama_vocab_dir() {
  if (const char* env = std::getenv("ILRE_LLAMA_VOCAB_DIR")) return std::string(env);
  if (fs::exists("/opt/llama-vocab")) return std::string("/opt/llama-vocab");
  return std::nullopt;
}

TEST(TokenizerGolden, LlamaSpmVectors) {
  EXPECT_EQ(check_vocab_file(test::data_dir() + "/tokenizer/ggml-vocab-llama-spm.gguf"), 0);
}

TEST(TokenizerGolden, Gpt2Vectors) {
  EXPECT_EQ(check_vocab_file(test::data_dir() + "/tokenizer/ggml-vocab-gpt-2.gguf"), 0);
}

TEST(TokenizerGolden, LlamaBpeVectors) {
  const auto dir = llama_vocab_dir();
  if (!dir || !fs::exists(*dir + "/ggml-vocab-llama-bpe.gguf")) GTEST_SKIP() << "ggml-vocab-llama-bpe.gguf not installed";
  // Both vector sets: shared/golden's (one input differs from the installed set: "F\u00fchrer" there,
  // "\u00c4pfel" here; same vocabulary).
  EXPECT_EQ(check_vocab_file(*dir + "/ggml-vocab-llama-bpe.gguf",
                             test::data_dir() + "/tokenizer/ggml-vocab-llama-bpe.gguf"),
            0);
  EXPECT_EQ(check_vocab_file(*dir + "/ggml-vocab-llama-bpe.gguf"), 0);
}

// Further vocabularies from llama.cpp's test set, when installed: SPM with strip rules (phi-3), GPT-2-style
// BPE with user-defined tokens (mpt), the \p{N} + GPT-2 family (starcoder, refact, command-r), qwen2.
class TokenizerGoldenExtra : public ::testing::TestWithParam<const char*> {};

TEST_P(TokenizerGoldenExtra, Vectors) {
  const auto dir = llama_vocab_dir();
  const std::string path = dir ? *dir + "/ggml-vocab-" + GetParam() + ".gguf" : std::string();
  if (!dir || !fs::exists(path) || !fs::exists(path + ".out")) GTEST_SKIP() << path << " not installed";
  EXPECT_EQ(check_vocab_file(path), 0);
}

INSTANTIATE_TEST_SUITE_P(TokenizerLlamaCpp, TokenizerGoldenExtra,
                         ::testing::Values("llama-spm", "gpt-2", "phi-3", "mpt", "starcoder", "refact", "command-r",
                                           "qwen2"));

TEST(TokenizerGolden, Stories260KPrompts) {
  const auto golden = nlohmann::json::parse(test::read_data_file("golden/stories260K-f32.f32kv.logits.json.zst"));
  auto file = GgufFile::open(test::data_model("stories260K-f32.gguf"));
  auto vocab = Vocab::from_gguf(*file);
  ASSERT_GE(golden["cases"].size(), 5u);
  for (const auto& c : golden["cases"]) {
    const std::string prompt = c["prompt"];
    const std::vector<TokenId> want = c["tokens"].get<std::vector<TokenId>>();
    const bool add_bos = c.value("add_bos", true);
    EXPECT_EQ(vocab->tokenize(prompt, TokenizeOptions{add_bos, false}), want) << "prompt '" << prompt << "'";
  }
}

// ---------------------------------------------------------------------------------------------------------
// Gemma 3 against llama-cpp-python.

// The corpus of scripts/make_tokenizer_reference.py: the reference strings (in order of first appearance)
// joined 20 times over, every 7th cyclically, separated by newlines.
std::string reference_corpus(const nlohmann::json& ref) {
  std::vector<std::string> texts;
  std::set<std::string> seen;
  for (const auto& c : ref["tokenize"]) {
    const std::string h = c["text_hex"];
    if (seen.insert(h).second) texts.push_back(unhex(h));
  }
  std::string out;
  for (size_t k = 0; k < 20 * texts.size(); ++k) {
    if (k) out.push_back('\n');
    out += texts[(k * 7) % texts.size()];
  }
  return out;
}

// FNV-1a 64 over the ids as little-endian int32, as the script computes it.
std::string digest(const std::vector<TokenId>& ids) {
  uint64_t h = 0xCBF29CE484222325ULL;
  for (TokenId id : ids) {
    const auto u = static_cast<uint32_t>(id);
    for (int b = 0; b < 4; ++b) h = (h ^ ((u >> (8 * b)) & 0xFF)) * 0x100000001B3ULL;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

void check_corpus(const Vocab& vocab, const std::string& corpus, const nlohmann::json& want, const std::string& what) {
  for (bool ps : {false, true}) {
    const auto ids = vocab.tokenize(corpus, TokenizeOptions{true, ps});
    const auto& w = want[ps ? "parse_special" : "plain"];
    EXPECT_EQ(ids.size(), w["n"].get<size_t>()) << what << " parse_special " << ps;
    EXPECT_EQ(digest(ids), w["fnv"].get<std::string>()) << what << " parse_special " << ps;
  }
}

nlohmann::json gemma_reference_json() {
  return nlohmann::json::parse(read_file(test::data_dir() + "/gemma3_tokenizer_reference.json"));
}

// Digests of the corpus for llama.cpp's test vocabularies, where they are installed (covers pre-tokenizers
// without vectors of their own: "default" for aquila and gpt-neox, SPM without metadata for baichuan).
TEST(TokenizerLlamaCppCorpus, Digests) {
  const auto dir = llama_vocab_dir();
  if (!dir) GTEST_SKIP() << "llama.cpp vocabularies not installed";
  const auto ref = nlohmann::json::parse(read_file(test::data_dir() + "/llama_vocab_tokenizer_reference.json"));
  const std::string corpus = reference_corpus(gemma_reference_json());
  int checked = 0;
  for (const auto& [name, v] : ref["vocabs"].items()) {
    const std::string path = *dir + "/ggml-vocab-" + name + ".gguf";
    if (!fs::exists(path)) continue;
    auto file = GgufFile::open(path);
    auto vocab = Vocab::from_gguf(*file);
    check_corpus(*vocab, corpus, v["corpus"], name);
    ++checked;
  }
  if (checked == 0) GTEST_SKIP() << "none of the vocabularies is installed";
}

class TokenizerGemma3 : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const auto path = test::gemma_model();
    if (!path) return;
    file_ = GgufFile::open(*path);
    vocab_ = Vocab::from_gguf(*file_);
    ref_ = nlohmann::json::parse(read_file(test::data_dir() + "/gemma3_tokenizer_reference.json"));
  }
  static void TearDownTestSuite() {
    vocab_.reset();
    file_.reset();
  }
  void SetUp() override {
    if (!vocab_) GTEST_SKIP() << "Gemma 3 model not fetched";
  }
  static std::shared_ptr<const GgufFile> file_;
  static std::shared_ptr<const Vocab> vocab_;
  static nlohmann::json ref_;
};
std::shared_ptr<const GgufFile> TokenizerGemma3::file_;
std::shared_ptr<const Vocab> TokenizerGemma3::vocab_;
nlohmann::json TokenizerGemma3::ref_;

TEST_F(TokenizerGemma3, Metadata) {
  const auto& m = ref_["vocab"];
  EXPECT_EQ(vocab_->n_tokens(), m["n_tokens"].get<int>());
  EXPECT_EQ(vocab_->bos(), m["bos"].get<int>());
  EXPECT_EQ(vocab_->eos(), m["eos"].get<int>());
  EXPECT_EQ(vocab_->eot(), m["eot"].get<int>());
  EXPECT_EQ(vocab_->add_bos(), m["add_bos"].get<bool>());
  EXPECT_EQ(vocab_->add_eos(), m["add_eos"].get<bool>());
  std::vector<TokenId> eog;
  for (TokenId id = 0; id < vocab_->n_tokens(); ++id) {
    if (vocab_->is_eog(id)) eog.push_back(id);
  }
  EXPECT_EQ(eog, m["eog"].get<std::vector<TokenId>>());
  EXPECT_EQ(vocab_->find_token("<end_of_turn>"), vocab_->eot());
  EXPECT_TRUE(vocab_->is_eog(vocab_->find_token("<end_of_turn>")));
}

TEST_F(TokenizerGemma3, Tokenize) {
  size_t n = 0;
  for (const auto& c : ref_["tokenize"]) {
    const std::string text = unhex(c["text_hex"]);
    const TokenizeOptions opt{c["add_special"].get<bool>(), c["parse_special"].get<bool>()};
    const auto want = c["ids"].get<std::vector<TokenId>>();
    EXPECT_EQ(vocab_->tokenize(text, opt), want)
        << "text '" << text << "' add_special " << opt.add_special << " parse_special " << opt.parse_special;
    ++n;
  }
  EXPECT_GE(n, 200u);
}

TEST_F(TokenizerGemma3, Corpus) { check_corpus(*vocab_, reference_corpus(ref_), ref_["corpus"], "gemma3"); }

TEST_F(TokenizerGemma3, Pieces) {
  size_t n = 0;
  for (const auto& c : ref_["pieces"]) {
    const TokenId id = c["id"];
    EXPECT_EQ(vocab_->token_to_piece(id, false), unhex(c["plain_hex"])) << "id " << id;
    EXPECT_EQ(vocab_->token_to_piece(id, true), unhex(c["special_hex"])) << "id " << id;
    ++n;
  }
  EXPECT_GE(n, 200u);
}

TEST_F(TokenizerGemma3, Detokenize) {
  for (const auto& c : ref_["detokenize"]) {
    const auto ids = c["ids"].get<std::vector<TokenId>>();
    EXPECT_EQ(vocab_->detokenize(ids, c["render_special"].get<bool>()), unhex(c["text_hex"]));
  }
}

}  // namespace
}  // namespace ilre::model
