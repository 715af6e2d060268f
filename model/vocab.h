// Vocabulary and tokenizers read from GGUF metadata, matching llama.cpp's tokenisation id for id.
//
// Two families: SentencePiece-style ("llama": score-ordered bigram merges with byte fallback; stories260K,
// Llama 2, Gemma 3) and byte-level BPE ("gpt2": rank-ordered merges after a regex pre-tokenizer; GPT-2,
// Llama 3). Special tokens (control / user-defined) are split out before the tokenizer runs, as llama.cpp does.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ilre::model {

class GgufFile;

using TokenId = int32_t;

enum class VocabKind { spm, bpe };

// Token attributes from tokenizer.ggml.token_type (llama.cpp's llama_token_type).
enum class TokenType : int32_t {
  undefined = 0,
  normal = 1,
  unknown = 2,
  control = 3,
  user_defined = 4,
  unused = 5,
  byte = 6,
};

struct TokenizeOptions {
  bool add_special = true;     // add BOS/EOS as the model's metadata says
  bool parse_special = false;  // treat the text of control tokens such as "</s>" as those tokens
};

class Vocab {
 public:
  // Reads tokenizer.ggml.* metadata. Throws Exception(bad_gguf / unsupported) naming what is wrong.
  static std::shared_ptr<const Vocab> from_gguf(const GgufFile& file);
  virtual ~Vocab() = default;

  virtual VocabKind kind() const = 0;
  virtual int32_t n_tokens() const = 0;
  virtual TokenId bos() const = 0;  // -1 when the model has none
  virtual TokenId eos() const = 0;
  virtual TokenId eot() const = 0;  // end-of-turn (Gemma's <end_of_turn>), -1 when none
  virtual bool add_bos() const = 0;
  virtual bool add_eos() const = 0;
  // True for every token that ends generation (EOS, EOT and the model's other end-of-generation tokens).
  virtual bool is_eog(TokenId id) const = 0;
  virtual TokenType token_type(TokenId id) const = 0;
  virtual const std::string& token_text(TokenId id) const = 0;  // raw vocabulary entry

  // Text -> ids, as llama_tokenize(text, add_special, parse_special).
  virtual std::vector<TokenId> tokenize(std::string_view text, const TokenizeOptions& options) const = 0;
  // One token -> its UTF-8 bytes, as llama_token_to_piece(id, special = render_special).
  virtual std::string token_to_piece(TokenId id, bool render_special = false) const = 0;
  // Ids -> text, as llama_detokenize(ids, remove_special = false, unparse_special = render_special).
  virtual std::string detokenize(std::span<const TokenId> ids, bool render_special = false) const = 0;
  // Finds the id of an exact vocabulary entry (e.g. "<start_of_turn>"), -1 if absent.
  virtual TokenId find_token(std::string_view text) const = 0;
};

// Tokenises a document that arrives in arbitrary byte chunks (possibly splitting a UTF-8 sequence, a word or
// a special token) and yields exactly the ids that Vocab::tokenize gives for the whole text at once.
// Invalid UTF-8 is replaced by U+FFFD (counted in replaced_bytes()) so a bad byte never stops a stream.
class StreamingTokenizer {
 public:
  StreamingTokenizer(std::shared_ptr<const Vocab> vocab, TokenizeOptions options);
  ~StreamingTokenizer();
  StreamingTokenizer(StreamingTokenizer&&) noexcept;
  StreamingTokenizer& operator=(StreamingTokenizer&&) noexcept;

  // Appends bytes; returns the ids that are now final. Keeps at most a bounded tail of text pending.
  std::vector<TokenId> feed(std::string_view bytes);
  // End of the document: returns the remaining ids (and EOS if the model adds one).
  std::vector<TokenId> finish();

  uint64_t bytes_in() const;
  uint64_t replaced_bytes() const;  // invalid UTF-8 bytes replaced so far
  size_t pending_bytes() const;     // text held back because a later byte could still change its ids

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ilre::model
