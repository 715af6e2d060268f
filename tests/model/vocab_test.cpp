// Vocabulary loading, malformed tokenizer metadata, Unicode helpers, the special-token partition against a
// literal re-implementation of llama.cpp's algorithm, pieces / detokenize, and tokenizer speed.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <list>
#include <map>
#include <random>
#include <set>

#include "ilre/error.h"
#include "model/gguf/gguf.h"
#include "model/gguf/gguf_writer.h"
#include "model/tokenizer/tokenizer_internal.h"
#include "model/tokenizer/unicode.h"
#include "model/tokenizer/vocab.h"
#include "support/paths.h"

namespace ilre::model {
namespace {

const std::string kSp = "\xE2\x96\x81";  // U+2581, SentencePiece's space

// Metadata under construction: setting a key again replaces it (GgufWriter itself appends).
class Meta {
 public:
  using Setter = std::function<void(GgufWriter&)>;
  Meta& str(const std::string& k, const std::string& v) { return put(k, [=](GgufWriter& w) { w.set_string(k, v); }); }
  Meta& strs(const std::string& k, const std::vector<std::string>& v) {
    return put(k, [=](GgufWriter& w) { w.set_strings(k, v); });
  }
  Meta& f32s(const std::string& k, const std::vector<float>& v) {
    return put(k, [=](GgufWriter& w) { w.set_f32s(k, v); });
  }
  Meta& i32s(const std::string& k, const std::vector<int32_t>& v) {
    return put(k, [=](GgufWriter& w) { w.set_i32s(k, v); });
  }
  Meta& u32(const std::string& k, uint32_t v) { return put(k, [=](GgufWriter& w) { w.set_u32(k, v); }); }
  Meta& i32(const std::string& k, int32_t v) { return put(k, [=](GgufWriter& w) { w.set_i32(k, v); }); }
  Meta& flag(const std::string& k, bool v) { return put(k, [=](GgufWriter& w) { w.set_bool(k, v); }); }
  GgufWriter writer() const {
    GgufWriter out;
    for (const auto& [k, set] : kv_) set(out);
    return out;
  }

 private:
  Meta& put(const std::string& k, Setter s) {
    kv_[k] = std::move(s);
    return *this;
  }
  std::map<std::string, Setter> kv_;
};

// A small SentencePiece vocabulary: <unk> <s> </s>, 256 byte tokens, then the given pieces (type normal
// unless `types` says otherwise; scores default to -1, -2, ...).
Meta spm_meta(const std::vector<std::string>& pieces, const std::vector<float>& piece_scores = {},
              const std::vector<int32_t>& piece_types = {}) {
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<float> scores = {0, 0, 0};
  std::vector<int32_t> types = {2, 3, 3};
  static const char* hex = "0123456789ABCDEF";
  for (int b = 0; b < 256; ++b) {
    tokens.push_back(std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">");
    scores.push_back(0);
    types.push_back(6);
  }
  for (size_t i = 0; i < pieces.size(); ++i) {
    tokens.push_back(pieces[i]);
    scores.push_back(i < piece_scores.size() ? piece_scores[i] : -static_cast<float>(i + 1));
    types.push_back(i < piece_types.size() ? piece_types[i] : 1);
  }
  Meta m;
  m.str("general.architecture", "llama")
      .str("tokenizer.ggml.model", "llama")
      .strs("tokenizer.ggml.tokens", tokens)
      .f32s("tokenizer.ggml.scores", scores)
      .i32s("tokenizer.ggml.token_type", types)
      .u32("tokenizer.ggml.bos_token_id", 1)
      .u32("tokenizer.ggml.eos_token_id", 2)
      .u32("tokenizer.ggml.unknown_token_id", 0);
  return m;
}

constexpr int32_t kFirstPiece = 3 + 256;

std::shared_ptr<const GgufFile> written(const Meta& m) {
  const std::string path = test::scratch_dir("vocab") + "/vocab.gguf";
  m.writer().write(path);
  return GgufFile::open(path);
}

std::shared_ptr<const Vocab> load(const Meta& m) {
  auto f = written(m);
  return Vocab::from_gguf(*f);
}

// Expects Vocab::from_gguf to throw `code` with a message containing `needle`.
void expect_load_error(const Meta& m, errc code, const std::string& needle) {
  auto f = written(m);
  try {
    Vocab::from_gguf(*f);
    ADD_FAILURE() << "no error; expected one mentioning " << needle;
  } catch (const Exception& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------------------------------------------------
// Malformed metadata

TEST(VocabMalformed, MissingModel) {
  Meta w;
  w.strs("tokenizer.ggml.tokens", {"a", "b"});
  expect_load_error(w, errc::bad_gguf, "tokenizer.ggml.model");
}

TEST(VocabMalformed, UnknownModel) {
  Meta w = spm_meta({});
  w.str("tokenizer.ggml.model", "wordpiece-2000");
  expect_load_error(w, errc::unsupported, "wordpiece-2000");
}

TEST(VocabMalformed, UnsupportedLlamaCppModel) {
  Meta w = spm_meta({});
  w.str("tokenizer.ggml.model", "bert");
  expect_load_error(w, errc::unsupported, "'bert'");
}

TEST(VocabMalformed, MissingTokens) {
  Meta w;
  w.str("tokenizer.ggml.model", "llama");
  expect_load_error(w, errc::bad_gguf, "tokenizer.ggml.tokens");
}

TEST(VocabMalformed, TokensOfWrongType) {
  Meta w;
  w.str("tokenizer.ggml.model", "llama");
  w.i32s("tokenizer.ggml.tokens", {1, 2, 3});
  expect_load_error(w, errc::bad_gguf, "tokenizer.ggml.tokens");
}

TEST(VocabMalformed, EmptyTokens) {
  Meta w;
  w.str("tokenizer.ggml.model", "llama");
  w.strs("tokenizer.ggml.tokens", {});
  expect_load_error(w, errc::bad_gguf, "tokenizer.ggml.tokens");
}

TEST(VocabMalformed, ScoresLengthMismatch) {
  Meta w = spm_meta({"a", "b"});
  w.f32s("tokenizer.ggml.scores", {0.0f, 1.0f});
  expect_load_error(w, errc::bad_gguf, "tokenizer.ggml.scores");
}

TEST(VocabMalformed, TokenTypeLengthMismatch) {
  Meta w = spm_meta({"a", "b"});
  w.i32s("tokenizer.ggml.token_type", {1, 1, 1});
  expect_load_error(w, errc::bad_gguf, "tokenizer.ggml.token_type");
}

TEST(VocabMalformed, BosOutOfRange) {
  Meta w = spm_meta({"a"});
  w.u32("tokenizer.ggml.bos_token_id", 100000);
  expect_load_error(w, errc::bad_gguf, "tokenizer.ggml.bos_token_id");
}

TEST(VocabMalformed, NegativeEos) {
  Meta w = spm_meta({"a"});
  w.i32("tokenizer.ggml.eos_token_id", -7);
  expect_load_error(w, errc::bad_gguf, "tokenizer.ggml.eos_token_id");
}

TEST(VocabMalformed, AddBosWithoutBos) {
  // One token: llama.cpp's default BOS id 1 is outside the vocabulary, yet SPM adds a BOS by default.
  Meta w;
  w.str("tokenizer.ggml.model", "llama");
  w.strs("tokenizer.ggml.tokens", {"a"});
  expect_load_error(w, errc::bad_gguf, "BOS");
}

TEST(VocabMalformed, DuplicateToken) {
  Meta w = spm_meta({"ab", "cd", "ab"});
  expect_load_error(w, errc::bad_gguf, "duplicate");
}

TEST(VocabMalformed, MalformedByteToken) {
  Meta w = spm_meta({"<0", "x"}, {}, {6, 1});
  expect_load_error(w, errc::bad_gguf, "byte token");
}

Meta bpe_meta() {
  Meta m;
  m.str("tokenizer.ggml.model", "gpt2")
      .str("tokenizer.ggml.pre", "gpt-2")
      .strs("tokenizer.ggml.tokens", {"a", "b", "ab", "<|endoftext|>"})
      .i32s("tokenizer.ggml.token_type", {1, 1, 1, 3})
      .strs("tokenizer.ggml.merges", {"a b"})
      .u32("tokenizer.ggml.bos_token_id", 3)
      .u32("tokenizer.ggml.eos_token_id", 3);
  return m;
}

TEST(VocabMalformed, BpeWithoutMerges) {
  Meta w;
  w.str("tokenizer.ggml.model", "gpt2");
  w.str("tokenizer.ggml.pre", "gpt-2");
  w.strs("tokenizer.ggml.tokens", {"a", "b"});
  expect_load_error(w, errc::bad_gguf, "tokenizer.ggml.merges");
}

TEST(VocabMalformed, UnknownPreTokenizer) {
  Meta w = bpe_meta();
  w.str("tokenizer.ggml.pre", "mystery-pre");
  expect_load_error(w, errc::unsupported, "mystery-pre");
}

TEST(VocabMalformed, KnownButUnimplementedPreTokenizer) {
  Meta w = bpe_meta();
  w.str("tokenizer.ggml.pre", "deepseek-llm");
  expect_load_error(w, errc::unsupported, "deepseek-llm");
}

TEST(VocabMalformed, MissingByteFallbackIsAnErrorNotACrash) {
  // No byte tokens: a character outside the vocabulary cannot be spelled.
  Meta w;
  w.str("tokenizer.ggml.model", "llama");
  w.strs("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", kSp + "a"});
  w.i32s("tokenizer.ggml.token_type", {2, 3, 3, 1});
  auto vocab = load(w);
  EXPECT_EQ(vocab->tokenize("a", {false, false}), std::vector<TokenId>{3});
  try {
    vocab->tokenize("z", {false, false});
    ADD_FAILURE() << "expected an exception";
  } catch (const Exception& e) {
    EXPECT_EQ(e.code(), errc::unsupported);
  }
}

TEST(VocabMalformed, OutOfRangeIdsThrow) {
  auto vocab = load(spm_meta({"a"}));
  EXPECT_THROW(vocab->token_to_piece(-1), Exception);
  EXPECT_THROW(vocab->token_to_piece(vocab->n_tokens()), Exception);
  EXPECT_THROW(vocab->token_text(1 << 20), Exception);
  const std::vector<TokenId> bad = {1, 99999};
  EXPECT_THROW(vocab->detokenize(bad), Exception);
  EXPECT_FALSE(vocab->is_eog(-1));
  EXPECT_FALSE(vocab->is_eog(1 << 30));
}

// ---------------------------------------------------------------------------------------------------------
// SentencePiece behaviour on hand-made vocabularies

TEST(VocabSpm, HighestScoreMergesFirstThenLeftmost) {
  // "abc": bc (-0.5) beats ab (-1); then a+bc -> abc.
  auto vocab = load(spm_meta({kSp, "a", "b", "c", "ab", "bc", "abc", kSp + "abc"}, {-9, -9, -9, -9, -1, -0.5, -2, -3}));
  const TokenId sp = kFirstPiece;
  EXPECT_EQ(vocab->tokenize("abc", {false, false}), std::vector<TokenId>{sp + 7});
  // "aaaa" with only "aa": leftmost pairs first -> aa aa.
  auto v2 = load(spm_meta({kSp, "a", "aa"}, {-5, -5, -1}));
  EXPECT_EQ(v2->tokenize("aaa", {false, false}), (std::vector<TokenId>{sp, sp + 2, sp + 1}));
}

TEST(VocabSpm, ByteFallbackAndSpacePrefix) {
  auto vocab = load(spm_meta({kSp, "a"}));
  const TokenId sp = kFirstPiece;
  // "a é": ▁ a ▁ then é as bytes C3 A9; BOS first.
  EXPECT_EQ(vocab->tokenize("a \xC3\xA9", {true, false}),
            (std::vector<TokenId>{1, sp, sp + 1, sp, 3 + 0xC3, 3 + 0xA9}));
  EXPECT_EQ(vocab->tokenize("", {true, false}), std::vector<TokenId>{1});
  EXPECT_EQ(vocab->tokenize("", {false, false}), std::vector<TokenId>{});
}

TEST(VocabSpm, AddSpacePrefixFromMetadata) {
  Meta w = spm_meta({kSp, "a"});
  w.flag("tokenizer.ggml.add_space_prefix", false);
  auto vocab = load(w);
  EXPECT_EQ(vocab->tokenize("a", {false, false}), std::vector<TokenId>{kFirstPiece + 1});
  EXPECT_EQ(vocab->detokenize(std::vector<TokenId>{kFirstPiece, kFirstPiece + 1}), " a");
}

TEST(VocabSpm, SpecialTokensAndSpacePrefixAfterThem) {
  // <|u|> user-defined (always split out), </s> control (only with parse_special).
  auto vocab = load(spm_meta({kSp, "a", "<|u|>", kSp + "a"}, {-5, -5, 0, -1}, {1, 1, 4, 1}));
  const TokenId sp = kFirstPiece, a = sp + 1, u = sp + 2, spa = sp + 3;
  EXPECT_EQ(vocab->tokenize("a<|u|>a", {false, false}), (std::vector<TokenId>{spa, u, spa}));
  EXPECT_EQ(vocab->tokenize("<|u|>a", {false, false}), (std::vector<TokenId>{u, spa}));
  // Without parse_special "</s>" is text (its bytes); with it, the EOS token, and the next text gets "▁".
  const auto plain = vocab->tokenize("a</s>a", {false, false});
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 2), 0);
  EXPECT_EQ(vocab->tokenize("a</s>a", {false, true}), (std::vector<TokenId>{spa, 2, spa}));
  (void)a;
}

TEST(VocabSpm, PiecesAndDetokenize) {
  auto vocab = load(spm_meta({kSp, "a", kSp + "a", "<|u|>"}, {}, {1, 1, 1, 4}));
  const TokenId sp = kFirstPiece;
  EXPECT_EQ(vocab->token_to_piece(sp + 2), " a");
  EXPECT_EQ(vocab->token_to_piece(3 + 0x41), "A");    // byte token
  EXPECT_EQ(vocab->token_to_piece(1), "");             // control: only rendered on request
  EXPECT_EQ(vocab->token_to_piece(1, true), "<s>");
  EXPECT_EQ(vocab->token_to_piece(0, true), "<unk>");
  EXPECT_EQ(vocab->token_to_piece(sp + 3), "<|u|>");  // user-defined: always rendered
  // add_space_prefix: llama.cpp strips one leading space from the first id's piece only, so after a BOS
  // (whose piece is empty unless rendered) the space stays.
  EXPECT_EQ(vocab->detokenize(std::vector<TokenId>{sp + 2, sp + 2}), "a a");
  EXPECT_EQ(vocab->detokenize(std::vector<TokenId>{1, sp + 2}), " a");
  EXPECT_EQ(vocab->detokenize(std::vector<TokenId>{1, sp + 2}, true), "<s> a");
  EXPECT_EQ(vocab->find_token(kSp + "a"), sp + 2);
  EXPECT_EQ(vocab->find_token("zzz"), -1);
  EXPECT_EQ(vocab->token_type(3), TokenType::byte);
  EXPECT_EQ(vocab->token_type(1), TokenType::control);
}

TEST(VocabSpm, InvalidUtf8FallsBackToRawBytesLikeLlamaCpp) {
  auto vocab = load(spm_meta({kSp, "a", "b", "ab"}));
  // 0xE2 announces 3 bytes, so "\xE2ab" is one symbol: no "ab" merge, three byte tokens.
  EXPECT_EQ(vocab->tokenize("\xE2" "ab", {false, false}),
            (std::vector<TokenId>{kFirstPiece, 3 + 0xE2, 3 + 'a', 3 + 'b'}));
  EXPECT_EQ(vocab->detokenize(vocab->tokenize("\xE2" "ab\xFF", {false, false})), "\xE2" "ab\xFF");
}

TEST(VocabSpm, EndOfGenerationTokens) {
  auto vocab = load(spm_meta({"<end_of_turn>", "<start_of_turn>"}, {}, {3, 3}));
  EXPECT_EQ(vocab->eot(), kFirstPiece);
  EXPECT_TRUE(vocab->is_eog(kFirstPiece));
  EXPECT_TRUE(vocab->is_eog(2));
  EXPECT_FALSE(vocab->is_eog(kFirstPiece + 1));
  EXPECT_FALSE(vocab->is_eog(1));
}

TEST(VocabStories, Metadata) {
  auto f = GgufFile::open(test::data_model("stories260K-f32.gguf"));
  auto vocab = Vocab::from_gguf(*f);
  EXPECT_EQ(vocab->kind(), VocabKind::spm);
  EXPECT_EQ(vocab->n_tokens(), 512);
  EXPECT_EQ(vocab->bos(), 1);
  EXPECT_EQ(vocab->eos(), 2);
  EXPECT_EQ(vocab->eot(), -1);
  EXPECT_TRUE(vocab->add_bos());
  EXPECT_FALSE(vocab->add_eos());
  EXPECT_TRUE(vocab->is_eog(2));
  EXPECT_EQ(vocab->token_type(3 + 10), TokenType::byte);
  EXPECT_EQ(vocab->token_to_piece(vocab->find_token("<0x0A>")), "\n");
  const std::string text = "Once upon a time, Lily said: \"Hi!\" \xF0\x9F\x99\x82\n  two  spaces";
  EXPECT_EQ(vocab->detokenize(vocab->tokenize(text, {false, false})), text);
}

TEST(VocabBpe, Gpt2PiecesAndRoundTrip) {
  auto f = GgufFile::open(test::data_dir() + "/tokenizer/ggml-vocab-gpt-2.gguf");
  auto vocab = Vocab::from_gguf(*f);
  EXPECT_EQ(vocab->kind(), VocabKind::bpe);
  EXPECT_EQ(vocab->bos(), 50256);
  EXPECT_EQ(vocab->eos(), 50256);
  EXPECT_FALSE(vocab->add_bos());
  EXPECT_EQ(vocab->token_to_piece(vocab->find_token("\xC4\xA0the")), " the");  // "Ġthe"
  EXPECT_EQ(vocab->token_to_piece(vocab->find_token("\xC4\x8A")), "\n");       // "Ċ"
  EXPECT_EQ(vocab->token_to_piece(50256), "");
  EXPECT_EQ(vocab->token_to_piece(50256, true), "<|endoftext|>");
  const std::string text = "Hello world\n\n  indented\tcode() { return x; } \xF0\x9F\xA6\x99 \xE4\xBD\xA0\xE5\xA5\xBD";
  EXPECT_EQ(vocab->detokenize(vocab->tokenize(text, {false, false})), text);
  // clean_spaces, as llama.cpp: " ," loses its space on detokenize.
  EXPECT_EQ(vocab->detokenize(vocab->tokenize("a , b", {false, false})), "a, b");
  EXPECT_EQ(vocab->tokenize("<|endoftext|>", {false, true}), std::vector<TokenId>{50256});
  EXPECT_NE(vocab->tokenize("<|endoftext|>", {false, false}), std::vector<TokenId>{50256});
}

TEST(VocabBpe, TinyMergesAndUnknownBytes) {
  auto vocab = load(bpe_meta());
  EXPECT_EQ(vocab->tokenize("ab", {false, false}), std::vector<TokenId>{2});
  EXPECT_EQ(vocab->tokenize("ba", {false, false}), (std::vector<TokenId>{1, 0}));
  // Characters outside the vocabulary are dropped byte by byte, as llama.cpp does.
  EXPECT_EQ(vocab->tokenize("abz", {false, false}), std::vector<TokenId>{2});
}

// ---------------------------------------------------------------------------------------------------------
// Unicode helpers

TEST(VocabUnicode, CategoriesMatchLlamaCppTable) {
  using namespace unicode;
  auto cat = [](uint32_t c) { return cpt_flags(c) & kCategoryMask; };
  EXPECT_EQ(cat('a'), kLetter);
  EXPECT_EQ(cat('Z'), kLetter);
  EXPECT_EQ(cat('7'), kNumber);
  EXPECT_EQ(cat('_'), kPunctuation);
  EXPECT_EQ(cat('$'), kSymbol);
  EXPECT_EQ(cat('`'), kSymbol);
  EXPECT_EQ(cat(0x00), kControl);
  EXPECT_EQ(cat(' '), kSeparator);
  EXPECT_TRUE(is_whitespace(' '));
  EXPECT_TRUE(is_whitespace('\n'));
  EXPECT_TRUE(is_whitespace(0x85));
  EXPECT_TRUE(is_whitespace(0xA0));
  EXPECT_TRUE(is_whitespace(0x3000));
  EXPECT_FALSE(is_whitespace(0x200B));  // zero width space is Cf, not White_Space
  EXPECT_EQ(cat(0x200B), kControl);
  EXPECT_EQ(cat(0x0301), kAccentMark);
  EXPECT_EQ(cat(0x0661), kNumber);   // Arabic-Indic one
  EXPECT_EQ(cat(0x2167), kNumber);   // Roman numeral eight (Nl)
  EXPECT_EQ(cat(0x00BF), kPunctuation);
  EXPECT_EQ(cat(0x20AC), kSymbol);   // euro sign
  EXPECT_EQ(cat(0x1F642), kSymbol);  // emoji
  EXPECT_EQ(cat(0x4E2D), kLetter);   // CJK
  EXPECT_EQ(cat(0x0378), kUndefined);
  EXPECT_EQ(cat(0xE000), kControl);  // private use
  EXPECT_EQ(cat(0xD800), kControl);  // surrogate
  EXPECT_EQ(cat(0x110000), kUndefined);
  // Unicode 15.1 assignments that llama.cpp's table has.
  EXPECT_EQ(cat(0x2EBF0), kLetter);
  EXPECT_EQ(cat(0x2EE5D), kLetter);
  EXPECT_EQ(cat(0x2FFC), kSymbol);
  EXPECT_EQ(cat(0x31EF), kSymbol);
  EXPECT_EQ(cat(0x2EE5E), kUndefined);
}

TEST(VocabUnicode, SanitizeUtf8) {
  uint64_t n = 0;
  const std::string ok = "plain \xC3\xA9 \xE4\xBD\xA0 \xF0\x9F\x99\x82";
  EXPECT_EQ(sanitize_utf8(ok, &n), ok);
  EXPECT_EQ(n, 0u);
  const std::string fffd = "\xEF\xBF\xBD";
  EXPECT_EQ(sanitize_utf8("\xFF", &n), fffd);
  EXPECT_EQ(n, 1u);
  n = 0;
  EXPECT_EQ(sanitize_utf8("\xE2\x82" "A", &n), fffd + fffd + "A");
  EXPECT_EQ(n, 2u);
  n = 0;
  EXPECT_EQ(sanitize_utf8("\xC0\x80", &n), fffd + fffd);  // overlong
  EXPECT_EQ(sanitize_utf8("\xED\xA0\x80", &n), fffd + fffd + fffd);  // surrogate
  EXPECT_EQ(sanitize_utf8("\xF4\x90\x80\x80", &n), fffd + fffd + fffd + fffd);  // above U+10FFFF
  EXPECT_EQ(sanitize_utf8("x\xF0\x9F\x99", &n), "x" + fffd + fffd + fffd);  // truncated at the end
}

TEST(VocabUnicode, Gpt2ByteMap) {
  EXPECT_EQ(unicode::byte_to_utf8(' '), "\xC4\xA0");   // U+0120
  EXPECT_EQ(unicode::byte_to_utf8('\n'), "\xC4\x8A");  // U+010A
  EXPECT_EQ(unicode::byte_to_utf8('A'), "A");
  EXPECT_EQ(unicode::byte_to_utf8(0xAD), "\xC5\x83");  // U+0143
  for (int b = 0; b < 256; ++b) {
    size_t off = 0;
    const uint32_t cpt = unicode::decode_lenient(unicode::byte_to_utf8(static_cast<uint8_t>(b)), off);
    EXPECT_EQ(unicode::utf8_cpt_to_byte(cpt), b);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Special-token partition against a literal transcription of llama.cpp's tokenizer_st_partition.

std::vector<detail::Fragment> reference_partition(std::string_view text, const std::vector<TokenId>& order,
                                                  const std::vector<std::string>& texts,
                                                  const std::vector<uint32_t>& attrs, bool parse_special) {
  using detail::Fragment;
  std::list<Fragment> buf;
  if (!text.empty()) buf.push_back(Fragment{false, -1, 0, text.size()});
  auto space = [](char c) { return c == ' ' || (c >= '\t' && c <= '\r'); };
  for (TokenId id : order) {
    const uint32_t a = attrs[static_cast<size_t>(id)];
    if (!parse_special && (a & (detail::kAttrControl | detail::kAttrUnknown))) continue;
    const std::string& tok = texts[static_cast<size_t>(id)];
    for (auto it = buf.begin(); it != buf.end();) {
      if (it->is_token) {
        ++it;
        continue;
      }
      std::vector<Fragment> pieces;
      size_t base = it->offset;
      size_t blen = it->length;
      while (true) {
        const size_t m = text.substr(0, base + blen).find(tok, base);
        if (m == std::string_view::npos) {
          if (blen > 0) pieces.push_back(Fragment{false, -1, base, blen});
          break;
        }
        if (m > base) {
          size_t llen = m - base;
          if (a & detail::kAttrLstrip) {
            while (llen > 0 && space(text[base + llen - 1])) --llen;
          }
          if (llen > 0) pieces.push_back(Fragment{false, -1, base, llen});
        }
        pieces.push_back(Fragment{true, id, 0, 0});
        if (m + tok.size() < base + blen) {
          size_t roff = m + tok.size();
          size_t rlen = base + blen - roff;
          if (a & detail::kAttrRstrip) {
            while (rlen > 0 && space(text[roff])) {
              ++roff;
              --rlen;
            }
          }
          base = roff;
          blen = rlen;
        } else {
          break;
        }
      }
      it = buf.erase(it);
      buf.insert(it, pieces.begin(), pieces.end());
    }
  }
  return {buf.begin(), buf.end()};
}

bool same(const std::vector<detail::Fragment>& a, const std::vector<detail::Fragment>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].is_token != b[i].is_token) return false;
    if (a[i].is_token ? a[i].token != b[i].token : (a[i].offset != b[i].offset || a[i].length != b[i].length)) {
      return false;
    }
  }
  return true;
}

TEST(VocabSpecialPartition, MatchesLlamaCppAlgorithmOnRandomInputs) {
  std::mt19937 rng(20240601);
  const std::string alphabet = "ab <>\n";
  int compared = 0;
  for (int round = 0; round < 300; ++round) {
    // A random set of special texts over a tiny alphabet, so that they overlap, nest and repeat.
    std::vector<std::string> texts;
    std::vector<uint32_t> attrs;
    const int n_special = 1 + static_cast<int>(rng() % 12);
    std::set<std::string> seen;
    while (static_cast<int>(texts.size()) < n_special) {
      std::string t;
      const int len = 1 + static_cast<int>(rng() % 5);
      for (int k = 0; k < len; ++k) t.push_back(alphabet[rng() % alphabet.size()]);
      if (!seen.insert(t).second) continue;
      texts.push_back(t);
      static const uint32_t kinds[] = {detail::kAttrControl, detail::kAttrUserDefined, detail::kAttrUnknown,
                                       detail::kAttrControl | detail::kAttrUserDefined};
      uint32_t a = kinds[rng() % 4];
      if (round % 3 == 0 && rng() % 3 == 0) a |= detail::kAttrLstrip;
      if (round % 3 == 0 && rng() % 3 == 0) a |= detail::kAttrRstrip;
      attrs.push_back(a);
    }
    std::vector<TokenId> order(texts.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<TokenId>(i);
    std::sort(order.begin(), order.end(), [&](TokenId x, TokenId y) {
      return texts[static_cast<size_t>(x)].size() > texts[static_cast<size_t>(y)].size();
    });
    detail::SpecialTokens special;
    special.build(order, texts, attrs);
    for (int t = 0; t < 10; ++t) {
      std::string text;
      // Short texts, and long ones (more than 64 occurrences of a token take the gap-search path).
      const size_t len = (t % 3 == 2) ? 500 + rng() % 3000 : rng() % 40;
      for (size_t k = 0; k < len; ++k) text.push_back(alphabet[rng() % alphabet.size()]);
      for (bool ps : {false, true}) {
        std::vector<detail::Fragment> got;
        special.partition(text, ps, got);
        const auto want = reference_partition(text, order, texts, attrs, ps);
        ASSERT_TRUE(same(got, want)) << "round " << round << " text '" << text << "' parse_special " << ps;
        ++compared;
      }
    }
  }
  EXPECT_EQ(compared, 300 * 10 * 2);
}

// ---------------------------------------------------------------------------------------------------------
// Speed. Bounds are generous for a loaded 2-core CI machine; the measured figures (printed as "[ speed ]") are
// far lower. Only checked in optimised builds without sanitizers.

bool timing_meaningful() {
#if !defined(NDEBUG) || defined(__SANITIZE_ADDRESS__)
  return false;
#else
  return true;
#endif
}

std::string english_prose(size_t n) {
  static const char* words[] = {
      "the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on", "not",
      "he", "I", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an", "had", "they", "you",
      "were", "their", "one", "all", "we", "can", "her", "has", "there", "been", "if", "more", "when", "will",
      "would", "who", "so", "no", "little", "girl", "named", "Lily", "garden", "walked", "beautiful", "morning",
      "sunshine", "children", "played", "together", "happily", "because", "however", "suddenly", "remembered",
      "government", "information", "development", "understanding", "don't", "it's", "1999", "42"};
  std::mt19937 rng(42);
  std::string s;
  int sentences = 0;
  while (s.size() < n) {
    const int len = 5 + static_cast<int>(rng() % 15);
    for (int i = 0; i < len; ++i) {
      std::string w = words[rng() % (sizeof(words) / sizeof(*words))];
      if (i == 0) w[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(w[0])));
      s += w;
      if (i + 1 < len) s += (rng() % 10 == 0) ? ", " : " ";
    }
    s += (rng() % 5 == 0) ? "? " : ". ";
    if (++sentences % 7 == 0) s += "\n\n";
  }
  s.resize(n);
  return s;
}

std::string repeat(const std::string& unit, size_t n) {
  std::string s;
  while (s.size() + unit.size() <= n) s += unit;
  return s;
}

double seconds_to_tokenize(const Vocab& vocab, const std::string& text, size_t* n_ids = nullptr) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto ids = vocab.tokenize(text, {true, false});
  const auto t1 = std::chrono::steady_clock::now();
  if (n_ids != nullptr) *n_ids = ids.size();
  return std::chrono::duration<double>(t1 - t0).count();
}

void check_speed(const Vocab& vocab, const std::string& name, double prose_limit, double pathological_limit) {
  constexpr size_t kMB = 1 << 20;
  struct Case {
    const char* what;
    std::string text;
    double limit;
  };
  const Case cases[] = {
      {"prose", english_prose(kMB), prose_limit},
      {"aaaa", std::string(kMB, 'a'), pathological_limit},
      {"spaces", std::string(kMB, ' '), pathological_limit},
      {"newlines", std::string(kMB, '\n'), pathological_limit},
      {"emoji", repeat("\xF0\x9F\x99\x82", kMB), pathological_limit},
      {"zwj-family", repeat("\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7", kMB),
       pathological_limit},
  };
  for (const auto& c : cases) {
    size_t n = 0;
    const double s = seconds_to_tokenize(vocab, c.text, &n);
    std::printf("[ speed ] %-10s %-10s 1 MiB -> %7zu ids in %6.1f ms\n", name.c_str(), c.what, n, s * 1000);
    EXPECT_GT(n, 0u);
    if (timing_meaningful()) {
      EXPECT_LT(s, c.limit) << name << " " << c.what;
    }
  }
}

TEST(VocabPerformance, Stories260K) {
  auto f = GgufFile::open(test::data_model("stories260K-f32.gguf"));
  check_speed(*Vocab::from_gguf(*f), "stories", 1.0, 3.0);
}

TEST(VocabPerformance, Gpt2) {
  auto f = GgufFile::open(test::data_dir() + "/tokenizer/ggml-vocab-gpt-2.gguf");
  check_speed(*Vocab::from_gguf(*f), "gpt-2", 1.0, 3.0);
}

TEST(VocabPerformance, Gemma3) {
  const auto path = test::gemma_model();
  if (!path) GTEST_SKIP() << "Gemma 3 model not fetched";
  auto f = GgufFile::open(*path);
  const auto t0 = std::chrono::steady_clock::now();
  auto vocab = Vocab::from_gguf(*f);
  const double load = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[ speed ] gemma3 vocabulary load %.1f ms\n", load * 1000);
  if (timing_meaningful()) {
    EXPECT_LT(load, 2.0);
  }
  check_speed(*vocab, "gemma3", 1.0, 3.0);
}

}  // namespace
}  // namespace ilre::model
