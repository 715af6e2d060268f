// StreamingTokenizer: for any chunking of a document, the concatenated ids equal whole-text tokenisation.
// Documents mix prose, code, whitespace runs, multilingual text, emoji and special-token texts; chunkings cut
// UTF-8 sequences, words, special-token texts and blank runs at random places.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "ilre/error.h"
#include "model/gguf/gguf.h"
#include "model/tokenizer/vocab.h"
#include "support/paths.h"

namespace ilre::model {
namespace {

namespace fs = std::filesystem;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string prose(size_t n, uint32_t seed) {
  static const char* words[] = {"the", "of", "and", "to", "in", "a", "is", "that", "it", "was", "with", "on",
                                "Lily", "garden", "walked", "morning", "children", "played", "happily",
                                "don't", "it's", "we'll", "1999", "3.14", "Führer", "naïve", "café", "(see",
                                "below)", "\"quoted\"", "e-mail", "x+y=z", "#tag", "@user"};
  std::mt19937 rng(seed);
  std::string s;
  while (s.size() < n) {
    const int len = 3 + static_cast<int>(rng() % 12);
    for (int i = 0; i < len; ++i) {
      s += words[rng() % (sizeof(words) / sizeof(*words))];
      s += (rng() % 9 == 0) ? ", " : " ";
    }
    s += (rng() % 4 == 0) ? "?\n" : ".  ";
    if (rng() % 6 == 0) s += "\n\n";
  }
  return s;
}

// A ~150 KB document touching every tokenizer path.
std::string document() {
  static const std::string doc = [] {
    std::vector<std::string> parts;
    for (const char* v : {"llama-spm", "gpt-2", "llama-bpe"}) {
      const std::string raw = read_file(test::data_dir() + "/tokenizer/ggml-vocab-" + v + ".gguf.inp");
      size_t pos = 0;
      const std::string sep = "\n__ggml_vocab_test__\n";
      while (pos < raw.size()) {
        size_t next = raw.find(sep, pos);
        if (next == std::string::npos) next = raw.size();
        parts.push_back(raw.substr(pos, next - pos));
        pos = next + sep.size();
      }
    }
    const char* extra[] = {
        "<start_of_turn>user\nWrite a poem.<end_of_turn>\n<start_of_turn>model\n",
        "<bos><eos></s><s><unk><pad><mask><|endoftext|><0x0A>",
        "text <start_of_turn> <end_of_turn><end_of_turn> <b>bold</b> <table><tr><td>1</td></tr></table>",
        "def f(x):\n\tif x:\n\t\treturn [i ** 2 for i in range(x)]\n\treturn None\n",
        "                                         forty-one spaces then \t\t\t\t\t\t tabs \n\n\n\n\n\n\n\n",
        "\r\n\r\n  \r\n windows \r\n",
        "我想在苹果公司工作。日本語のテキスト。 مرحبا بالعالم नमस्ते दुनिया Привет мир",
        "👨‍👩‍👧‍👦 👩🏽‍💻 👍🏻👍🏿 🇺🇸🇯🇵 🙂🙂🙂 🦙.cpp",
        "1234567890 0.5 1,000,000 ١٢٣ Ⅷ",
        "▁already▁escaped ▁ ▁▁",
        "a\u0301 combining, zero\u200bwidth, nbsp\u00a0here, ideographic\u3000space",
    };
    for (const char* e : extra) parts.push_back(e);
    parts.push_back(prose(60000, 7));
    std::mt19937 rng(99);
    std::string out;
    for (int rep = 0; rep < 2; ++rep) {
      std::shuffle(parts.begin(), parts.end(), rng);
      for (const auto& p : parts) {
        out += p;
        out += (rng() % 3 == 0) ? "\n" : " ";
      }
    }
    return out;
  }();
  return doc;
}

enum class Chunking { uniform4096, small, single_bytes, mixed };

struct StreamResult {
  std::vector<TokenId> ids;
  uint64_t forced = 0;
  uint64_t replaced = 0;
  uint64_t bytes_in = 0;
  size_t max_pending = 0;
};

StreamResult stream(const std::shared_ptr<const Vocab>& vocab, std::string_view text, TokenizeOptions opt,
                    Chunking chunking, uint32_t seed, StreamingOptions sopt = {}) {
  StreamingTokenizer st(vocab, opt, sopt);
  StreamResult r;
  std::mt19937 rng(seed);
  size_t pos = 0;
  while (pos < text.size()) {
    size_t k = 1;
    switch (chunking) {
      case Chunking::uniform4096:
        k = 1 + rng() % 4096;
        break;
      case Chunking::small:
        k = 1 + rng() % 8;
        break;
      case Chunking::single_bytes:
        k = 1;
        break;
      case Chunking::mixed:
        k = (rng() % 4 == 0) ? 1 + rng() % 4096 : 1 + rng() % 3;
        break;
    }
    k = std::min(k, text.size() - pos);
    const auto out = st.feed(text.substr(pos, k));
    r.ids.insert(r.ids.end(), out.begin(), out.end());
    pos += k;
    r.max_pending = std::max(r.max_pending, st.pending_bytes());
  }
  const auto out = st.finish();
  r.ids.insert(r.ids.end(), out.begin(), out.end());
  r.forced = st.forced_cuts();
  r.replaced = st.replaced_bytes();
  r.bytes_in = st.bytes_in();
  return r;
}

size_t first_difference(const std::vector<TokenId>& a, const std::vector<TokenId>& b) {
  size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  return i;
}

void check_equivalence(const std::shared_ptr<const Vocab>& vocab, const std::string& name) {
  const std::string doc = document();
  const TokenizeOptions options[] = {{true, false}, {true, true}, {false, false}};
  int runs = 0;
  for (const auto& opt : options) {
    const auto whole = vocab->tokenize(doc, opt);
    uint32_t seed = 1;
    for (Chunking c : {Chunking::uniform4096, Chunking::mixed, Chunking::uniform4096, Chunking::small}) {
      const auto r = stream(vocab, doc, opt, c, seed++);
      ASSERT_EQ(r.ids.size(), whole.size()) << name << " chunking " << static_cast<int>(c)
                                            << " parse_special " << opt.parse_special;
      ASSERT_EQ(r.ids, whole) << name << " first difference at id " << first_difference(r.ids, whole);
      EXPECT_EQ(r.forced, 0u);
      EXPECT_EQ(r.replaced, 0u);
      EXPECT_EQ(r.bytes_in, doc.size());
      // Natural text always has a safe cut nearby: the held-back tail stays small.
      EXPECT_LT(r.max_pending, 4096u + 4096u) << name;
      ++runs;
    }
    // Byte-by-byte over a slice (splits every UTF-8 sequence and every special text).
    const std::string slice = doc.substr(0, 30000);
    const auto r = stream(vocab, slice, opt, Chunking::single_bytes, 0);
    EXPECT_EQ(r.ids, vocab->tokenize(slice, opt)) << name << " byte by byte";
    ++runs;
  }
  EXPECT_EQ(runs, 15);
}

std::shared_ptr<const Vocab> load_vocab(const std::string& path) {
  auto f = GgufFile::open(path);
  return Vocab::from_gguf(*f);
}

TEST(StreamingTokenizer, Stories260KEquivalence) {
  check_equivalence(load_vocab(test::data_model("stories260K-f32.gguf")), "stories260K");
}

TEST(StreamingTokenizer, LlamaSpmEquivalence) {
  check_equivalence(load_vocab(test::data_dir() + "/tokenizer/ggml-vocab-llama-spm.gguf"), "llama-spm");
}

TEST(StreamingTokenizer, Gpt2Equivalence) {
  check_equivalence(load_vocab(test::data_dir() + "/tokenizer/ggml-vocab-gpt-2.gguf"), "gpt-2");
}

TEST(StreamingTokenizer, Gemma3Equivalence) {
  const auto path = test::gemma_model();
  if (!path) GTEST_SKIP() << "Gemma 3 model not fetched";
  check_equivalence(load_vocab(*path), "gemma3");
}

TEST(StreamingTokenizer, OtherLlamaCppVocabsEquivalence) {
  const std::string dir = std::getenv("ILRE_LLAMA_VOCAB_DIR") ? std::getenv("ILRE_LLAMA_VOCAB_DIR") : "/opt/llama-vocab";
  int n = 0;
  for (const char* v : {"llama-bpe", "phi-3", "aquila", "qwen2"}) {
    const std::string path = dir + "/ggml-vocab-" + v + ".gguf";
    if (!fs::exists(path)) continue;
    auto vocab = load_vocab(path);
    const std::string doc = document();
    for (bool ps : {false, true}) {
      const TokenizeOptions opt{true, ps};
      EXPECT_EQ(stream(vocab, doc, opt, Chunking::mixed, 5).ids, vocab->tokenize(doc, opt)) << v;
    }
    ++n;
  }
  if (n == 0) GTEST_SKIP() << "llama.cpp vocabularies not installed";
}

// Many short random documents built from pieces that stress the cut rules (special texts and parts of them,
// blank runs, apostrophes, digits, multi-byte characters), each with a random chunking.
void fuzz_short_documents(const std::shared_ptr<const Vocab>& vocab, const std::string& name, uint32_t seed) {
  static const char* pieces[] = {"<start_of_turn>", "<start_of", "_turn>", "<end_of_turn>", "<bos>", "<eos>", "</s>",
                                 "<s>", "<|endoftext|>", "<|endof", "<b>", "</b>", " ", "  ", "   ", "\n", "\n\n",
                                 "\t", "\t\t", "\r\n", "'s", "'ll", "'", "don't", "123", "4567", " 89", "a", "ab",
                                 "the", " the", "The", "Hello", " world", "!", "?!", "...", "(", ")", "é", "ü",
                                 "你好", "日本", "🙂", "👨‍👩‍👧", "\xE2\x96\x81", "▁x", "x▁", "=", "==", "->",
                                 "\u00a0", "\u3000", "١٢", "Ⅻ"};
  std::mt19937 rng(seed);
  int checked = 0;
  for (int doc = 0; doc < 400; ++doc) {
    std::string text;
    const int n = static_cast<int>(rng() % 30);
    for (int i = 0; i < n; ++i) text += pieces[rng() % (sizeof(pieces) / sizeof(*pieces))];
    for (const TokenizeOptions opt : {TokenizeOptions{true, false}, TokenizeOptions{true, true}}) {
      StreamingTokenizer st(vocab, opt);
      std::vector<TokenId> ids;
      size_t pos = 0;
      while (pos < text.size()) {
        const size_t k = std::min<size_t>(1 + rng() % 7, text.size() - pos);
        for (auto x : st.feed(std::string_view(text).substr(pos, k))) ids.push_back(x);
        pos += k;
      }
      for (auto x : st.finish()) ids.push_back(x);
      ASSERT_EQ(ids, vocab->tokenize(text, opt))
          << name << " document '" << text << "' parse_special " << opt.parse_special;
      ASSERT_EQ(st.forced_cuts(), 0u);
      ++checked;
    }
  }
  EXPECT_EQ(checked, 800);
}

TEST(StreamingTokenizer, ShortDocumentsFuzz) {
  fuzz_short_documents(load_vocab(test::data_model("stories260K-f32.gguf")), "stories", 1);
  fuzz_short_documents(load_vocab(test::data_dir() + "/tokenizer/ggml-vocab-llama-spm.gguf"), "llama-spm", 2);
  fuzz_short_documents(load_vocab(test::data_dir() + "/tokenizer/ggml-vocab-gpt-2.gguf"), "gpt-2", 3);
  if (const auto gemma = test::gemma_model()) fuzz_short_documents(load_vocab(*gemma), "gemma3", 4);
  const std::string llama_bpe = "/opt/llama-vocab/ggml-vocab-llama-bpe.gguf";
  if (fs::exists(llama_bpe)) fuzz_short_documents(load_vocab(llama_bpe), "llama-bpe", 5);
}

TEST(StreamingTokenizer, SpecialTokenSplitAcrossChunks) {
  const auto path = test::gemma_model();
  if (!path) GTEST_SKIP() << "Gemma 3 model not fetched";
  auto vocab = load_vocab(*path);
  const TokenizeOptions opt{true, true};
  const std::string text = "<start_of_turn>user\nhi<end_of_turn>";
  for (size_t cut = 1; cut < text.size(); ++cut) {
    StreamingTokenizer st(vocab, opt);
    auto ids = st.feed(text.substr(0, cut));
    for (auto x : st.feed(text.substr(cut))) ids.push_back(x);
    for (auto x : st.finish()) ids.push_back(x);
    EXPECT_EQ(ids, vocab->tokenize(text, opt)) << "cut at " << cut;
  }
}

TEST(StreamingTokenizer, InvalidUtf8IsReplacedConsistently) {
  std::string doc = document().substr(0, 40000);
  std::mt19937 rng(3);
  for (int i = 0; i < 300; ++i) {
    const size_t at = rng() % doc.size();
    static const char* bad[] = {"\xFF", "\xC0\x80", "\xE2\x82", "\xED\xA0\x80", "\xF0\x9F\x99", "\x80", "\xF5"};
    doc.insert(at, bad[rng() % 7]);
  }
  uint64_t replaced = 0;
  const std::string clean = sanitize_utf8(doc, &replaced);
  ASSERT_GT(replaced, 300u);
  for (const char* v : {"stories", "gpt-2"}) {
    auto vocab = std::string(v) == "stories"
                     ? load_vocab(test::data_model("stories260K-f32.gguf"))
                     : load_vocab(test::data_dir() + "/tokenizer/ggml-vocab-gpt-2.gguf");
    for (Chunking c : {Chunking::mixed, Chunking::small}) {
      const auto r = stream(vocab, doc, {true, false}, c, 11);
      EXPECT_EQ(r.replaced, replaced) << v;
      EXPECT_EQ(r.ids, vocab->tokenize(clean, {true, false})) << v;
      EXPECT_EQ(r.forced, 0u);
    }
  }
  // A sequence cut off at the very end of the document.
  auto vocab = load_vocab(test::data_model("stories260K-f32.gguf"));
  StreamingTokenizer st(vocab, {false, false});
  auto ids = st.feed("ab \xF0\x9F");
  EXPECT_LE(st.pending_bytes(), 5u);
  for (auto x : st.finish()) ids.push_back(x);
  EXPECT_EQ(st.replaced_bytes(), 2u);
  EXPECT_EQ(ids, vocab->tokenize(sanitize_utf8("ab \xF0\x9F"), {false, false}));
}

TEST(StreamingTokenizer, ForcedCutKeepsMemoryBoundedAndLosesNoText) {
  auto vocab = load_vocab(test::data_dir() + "/tokenizer/ggml-vocab-gpt-2.gguf");
  const std::string text(1 << 20, 'a');  // one pre-tokenizer word: no safe cut anywhere
  const StreamingOptions sopt{64 * 1024};
  const auto r = stream(vocab, text, {true, false}, Chunking::uniform4096, 17, sopt);
  EXPECT_GT(r.forced, 0u);
  EXPECT_LE(r.max_pending, sopt.max_pending_bytes + 64 * 1024 + 3);
  EXPECT_TRUE(vocab->detokenize(r.ids) == text) << "text lost or changed at a forced cut";
  // With a bound above the document size nothing is forced and the ids are exact.
  const std::string part = text.substr(0, 200000);
  const auto exact = stream(vocab, part, {true, false}, Chunking::uniform4096, 18, StreamingOptions{1 << 20});
  EXPECT_EQ(exact.forced, 0u);
  EXPECT_TRUE(exact.ids == vocab->tokenize(part, {true, false}));
}

TEST(StreamingTokenizer, ForcedCutAvoidsSplittingSpecialTokens) {
  auto vocab = load_vocab(test::data_dir() + "/tokenizer/ggml-vocab-gpt-2.gguf");
  std::string text;
  while (text.size() < 100000) text += "<|endoftext|>";  // one long run without a safe cut
  const auto r = stream(vocab, text, {false, true}, Chunking::uniform4096, 4, StreamingOptions{8192});
  EXPECT_GT(r.forced, 0u);
  EXPECT_EQ(r.ids, vocab->tokenize(text, {false, true}));  // cuts fell between the special tokens
}

TEST(StreamingTokenizer, EmptyDocumentAndLifecycle) {
  auto vocab = load_vocab(test::data_model("stories260K-f32.gguf"));
  StreamingTokenizer st(vocab, {true, false});
  EXPECT_TRUE(st.feed("").empty());
  EXPECT_EQ(st.finish(), vocab->tokenize("", {true, false}));
  EXPECT_THROW(st.feed("x"), Exception);
  EXPECT_THROW(st.finish(), Exception);

  StreamingTokenizer a(vocab, {true, false});
  auto ids = a.feed("Once upon a time");
  StreamingTokenizer b(std::move(a));
  for (auto x : b.feed(" there was a cat.")) ids.push_back(x);
  for (auto x : b.finish()) ids.push_back(x);
  EXPECT_EQ(ids, vocab->tokenize("Once upon a time there was a cat.", {true, false}));
  EXPECT_EQ(b.bytes_in(), 33u);
}

TEST(StreamingTokenizer, EmitsIdsBeforeTheDocumentEnds) {
  auto vocab = load_vocab(test::data_model("stories260K-f32.gguf"));
  StreamingTokenizer st(vocab, {true, false});
  const auto first = st.feed("Once upon a time there was a little girl named Lily. ");
  EXPECT_GT(first.size(), 10u);
  EXPECT_LT(st.pending_bytes(), 16u);
}

}  // namespace
}  // namespace ilre::model
