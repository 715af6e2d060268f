// Internals shared by the tokenizer sources (vocab.cpp, special_tokens.cpp, tokenizer_spm.cpp,
// tokenizer_bpe.cpp, streaming_tokenizer.cpp). Not part of the model library's interface.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "model/tokenizer/vocab.h"

namespace ilre::model::detail {

// llama.cpp's llama_token_attr bits (what the tokenizer actually consults; derived from the GGUF token type
// and adjusted by llama.cpp's load-time rules, e.g. end-of-generation texts are forced to CONTROL).
enum TokenAttr : uint32_t {
  kAttrUndefined = 0,
  kAttrUnknown = 1u << 0,
  kAttrUnused = 1u << 1,
  kAttrNormal = 1u << 2,
  kAttrControl = 1u << 3,
  kAttrUserDefined = 1u << 4,
  kAttrByte = 1u << 5,
  kAttrLstrip = 1u << 7,
  kAttrRstrip = 1u << 8,
};

// Exact-text -> id lookup (open addressing). Lookups take a string_view, so no allocation per probe; the first
// 8 bytes and the length of each key sit in the slot, so short keys (most merge candidates) are compared
// without touching the vocabulary strings.
class TokenTable {
 public:
  // Returns the id of the first text that repeats an earlier one, or -1 when all texts are distinct.
  int32_t build(const std::vector<std::string>* texts);
  int32_t find(std::string_view s) const;

 private:
  struct Slot {
    uint64_t head = 0;  // first 8 bytes, zero padded
    uint32_t len = 0;
    int32_t id = -1;
  };
  const std::vector<std::string>* texts_ = nullptr;
  std::vector<Slot> slots_;
  size_t mask_ = 0;
};

// Set of code-point pairs (a, b): a bitmap for ASCII pairs, open addressing for the rest.
class PairSet {
 public:
  void insert(uint32_t a, uint32_t b);
  bool contains(uint32_t a, uint32_t b) const;
  size_t size() const { return n_; }

 private:
  void grow();
  std::vector<uint64_t> ascii_ = std::vector<uint64_t>(128 * 128 / 64, 0);
  std::vector<uint64_t> table_;  // key + 1 (0 = empty)
  size_t n_ = 0;
  size_t n_table_ = 0;
};

// A piece of the input after special tokens are split out: raw text [offset, offset+length) or one token.
struct Fragment {
  bool is_token = false;
  TokenId token = -1;
  size_t offset = 0;
  size_t length = 0;
};

// Splits special tokens (CONTROL / USER_DEFINED / UNKNOWN) out of a text with exactly the result of llama.cpp's
// tokenizer_st_partition: tokens are tried in the order of llama.cpp's cache_special_tokens (longest text first,
// ties in the order std::sort leaves them), each one matched greedily left to right in the text that earlier
// tokens left free. CONTROL and UNKNOWN tokens are only split out with parse_special; USER_DEFINED always.
//
// llama.cpp does this with one pass over the text per special token (O(text x tokens), 6k tokens for Gemma).
// Here one Aho-Corasick pass finds every occurrence of every special text; then the tokens that occur are
// processed in the same priority order. A token with few occurrences checks each one against the placed
// intervals; a token with many occurrences (e.g. runs of spaces) searches only the still-free gaps, as
// llama.cpp does. Both give llama.cpp's result because a placement depends only on which of the token's
// occurrences lie in free text and do not overlap its previous placement (proof in special_tokens.cpp).
class SpecialTokens {
 public:
  // order: the token ids in priority order; texts/attrs: the whole vocabulary.
  void build(std::vector<TokenId> order, const std::vector<std::string>& texts, const std::vector<uint32_t>& attrs);
  void partition(std::string_view text, bool parse_special, std::vector<Fragment>& out) const;
  const std::vector<TokenId>& order() const { return order_; }
  bool eligible(size_t rank, bool parse_special) const { return parse_special || plain_[rank] != 0; }
  bool has_strip() const { return has_strip_; }

 private:
  struct Node {
    int32_t fail = 0;
    int32_t dict = -1;     // nearest node on the fail chain (excluding self) that ends a pattern
    int32_t pattern = -1;  // rank of the pattern ending here
    uint32_t edge_begin = 0;
    uint32_t edge_end = 0;
  };
  int32_t step(int32_t state, uint8_t c) const;

  std::vector<TokenId> order_;
  std::vector<std::string_view> text_;  // by rank, views into the vocabulary
  std::vector<uint8_t> plain_;          // by rank: split out even without parse_special
  std::vector<uint8_t> lstrip_, rstrip_;
  bool has_strip_ = false;
  std::vector<Node> nodes_;
  std::vector<uint8_t> edge_byte_;
  std::vector<int32_t> edge_child_;
  std::array<int32_t, 256> root_next_{};
};

enum class PreTokenizer { gpt2, llama3, qwen2, starcoder, default_bpe };

// Splits code points into pre-tokenizer words (lengths in code points), as llama.cpp's unicode_regex_split.
void pre_tokenize(PreTokenizer pre, const uint32_t* cpts, size_t n, std::vector<size_t>& word_lengths);
// True if, whatever follows, a cut between adjacent code points a|b is a word boundary of the pre-tokenizer
// and the words before it come out the same when the text ends at the cut (see tokenizer_bpe.cpp).
bool pre_tokenizer_safe_cut(PreTokenizer pre, uint32_t a, uint32_t b);

class VocabImpl final : public Vocab {
 public:
  explicit VocabImpl(const GgufFile& file);

  VocabKind kind() const override { return kind_; }
  int32_t n_tokens() const override { return static_cast<int32_t>(texts_.size()); }
  TokenId bos() const override { return bos_; }
  TokenId eos() const override { return eos_; }
  TokenId eot() const override { return eot_; }
  bool add_bos() const override { return add_bos_; }
  bool add_eos() const override { return add_eos_; }
  bool is_eog(TokenId id) const override;
  TokenType token_type(TokenId id) const override;
  const std::string& token_text(TokenId id) const override;
  std::vector<TokenId> tokenize(std::string_view text, const TokenizeOptions& options) const override;
  std::string token_to_piece(TokenId id, bool render_special) const override;
  std::string detokenize(std::span<const TokenId> ids, bool render_special) const override;
  TokenId find_token(std::string_view text) const override;

  // --- internals used by the tokenizers and the streaming tokenizer ---
  // Tokenizes text without BOS/EOS. prev_special is llama.cpp's is_prev_special (SPM space prefix): true at
  // the start of a document; updated to whether the text ended with a special token.
  void tokenize_segment(std::string_view text, bool parse_special, bool& prev_special,
                        std::vector<TokenId>& out) const;
  // True if a cut between adjacent code points a|b can never change the ids (see streaming_tokenizer.cpp).
  bool safe_cut(uint32_t a, uint32_t b, bool parse_special) const;
  // Condition 1 of safe_cut alone: no special token can span the cut.
  bool special_safe_cut(uint32_t a, uint32_t b, bool parse_special) const;

  int32_t lookup(std::string_view text) const { return table_.find(text); }
  size_t max_token_len() const { return max_token_len_; }
  float score(TokenId id) const { return scores_[static_cast<size_t>(id)]; }
  uint32_t attr(TokenId id) const { return attrs_[static_cast<size_t>(id)]; }
  TokenId byte_token(uint8_t b) const { return byte_tokens_[b]; }
  PreTokenizer pre() const { return pre_; }
  bool ignore_merges() const { return ignore_merges_; }
  // Rank of merging symbols (text_a, id_a) + (text_b, id_b); ids are -1 for texts outside the vocabulary.
  int32_t merge_rank(std::string_view a, int32_t id_a, std::string_view b, int32_t id_b) const;

 private:
  void load_tokens(const GgufFile& f);
  void load_special_ids(const GgufFile& f);
  void apply_llama_attr_rules(const GgufFile& f);
  void build_pieces();
  void build_cut_tables() const;
  void spm_fragment(std::string_view escaped, std::vector<TokenId>& out) const;
  std::string piece_for(TokenId id) const;
  void check_id(TokenId id) const;

  VocabKind kind_ = VocabKind::spm;
  PreTokenizer pre_ = PreTokenizer::gpt2;
  std::vector<std::string> texts_;
  std::vector<float> scores_;
  std::vector<TokenType> types_;
  std::vector<uint32_t> attrs_;
  TokenTable table_;
  size_t max_token_len_ = 0;

  TokenId bos_ = -1, eos_ = -1, eot_ = -1, eom_ = -1, unk_ = -1;
  TokenId fim_pre_ = -1, fim_suf_ = -1, fim_mid_ = -1, fim_pad_ = -1, fim_rep_ = -1, fim_sep_ = -1;
  bool add_bos_ = false, add_eos_ = false, add_space_prefix_ = false, clean_spaces_ = false;
  bool ignore_merges_ = false;
  std::vector<uint8_t> eog_;
  std::array<TokenId, 256> byte_tokens_{};
  std::vector<std::string> pieces_;  // llama.cpp's token-to-piece cache (special = true)
  SpecialTokens special_;

  // BPE merges: by token-id pair when both sides are vocabulary entries, else by text.
  std::unordered_map<uint64_t, int32_t> pair_ranks_;
  std::unordered_map<std::string, int32_t> text_ranks_;

  // Cut tables (streaming, and splitting long SPM fragments), built on first use: code-point pairs.
  mutable std::once_flag cut_once_;
  mutable PairSet vocab_pairs_;          // adjacent in some vocabulary text (SPM merges)
  mutable PairSet special_pairs_all_;    // adjacent in a special text split with parse_special
  mutable PairSet special_pairs_plain_;  // ... split without parse_special
};

// SentencePiece-style merge of one fragment (spaces already escaped to U+2581), appends ids.
void spm_tokenize(const VocabImpl& vocab, std::string_view text, std::vector<TokenId>& out);
// Byte-level BPE of one raw fragment (pre-tokenizer, byte mapping, rank-ordered merges), appends ids.
void bpe_tokenize(const VocabImpl& vocab, std::string_view text, std::vector<TokenId>& out);

}  // namespace ilre::model::detail
