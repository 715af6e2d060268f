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

// Replaces every byte that is not part of well-formed UTF-8 (RFC 3629: no overlong forms, surrogates or code
// points above U+10FFFF; a sequence cut off at the end is invalid too) with U+FFFD, one per byte, and adds
// the number of replaced bytes to *replaced_bytes. Valid UTF-8 comes back unchanged.
// Vocab::tokenize itself does not do this: it matches llama.cpp also on invalid UTF-8 (SPM falls back to
// byte tokens of the raw bytes, BPE decodes each bad byte as U+FFFD).
std::string sanitize_utf8(std::string_view text, uint64_t* replaced_bytes = nullptr);

struct StreamingOptions {
  // Text held back waiting for a safe cut. When the held-back text exceeds this without any safe cut (e.g.
  // 1 MB of one letter), it is cut anyway (counted in forced_cuts()); ids near such a cut may then differ from
  // whole-text tokenisation. Held-back text never exceeds max_pending_bytes + 64 KiB.
  size_t max_pending_bytes = 256 * 1024;
};

// Tokenises a document that arrives in arbitrary byte chunks (possibly splitting a UTF-8 sequence, a word or
// a special token) and yields exactly the ids that Vocab::tokenize gives for the whole text at once.
// Invalid UTF-8 is replaced by U+FFFD (counted in replaced_bytes()) so a bad byte never stops a stream.
//
// Guarantee: concatenating every feed() result and finish() gives tokenize(sanitize_utf8(document)) whenever
// forced_cuts() == 0, for any chunking. Text is only tokenised up to a cut that provably cannot change any id
// (see VocabImpl::safe_cut in vocab.cpp); for valid UTF-8, sanitize_utf8(document) == document.
class StreamingTokenizer {
 public:
  StreamingTokenizer(std::shared_ptr<const Vocab> vocab, TokenizeOptions options);
  StreamingTokenizer(std::shared_ptr<const Vocab> vocab, TokenizeOptions options, StreamingOptions stream_options);
  ~StreamingTokenizer();
  StreamingTokenizer(StreamingTokenizer&&) noexcept;
  StreamingTokenizer& operator=(StreamingTokenizer&&) noexcept;

  // Appends bytes; returns the ids that are now final. Keeps at most a bounded tail of text pending.
  std::vector<TokenId> feed(std::string_view bytes);
  // End of the document: returns the remaining ids (and EOS if the model adds one).
  std::vector<TokenId> finish();

  // Everything a stream needs to continue in another tokenizer (another append, another process): the text
  // not yet tokenised and the one piece of state carried across cuts. resume() of a checkpoint and feeding
  // the rest of the document gives the ids the uninterrupted stream would have given.
  struct Checkpoint {
    std::string incomplete;   // start of a UTF-8 sequence still waiting for its bytes (<= 3 bytes)
    std::string pending;      // sanitized text held back for a safe cut
    bool started = false;     // BOS already emitted
    bool prev_special = true;
    uint64_t bytes_in = 0, replaced = 0, forced = 0;

    std::vector<uint8_t> to_bytes() const;
    // Throws Exception(checksum_mismatch) on a malformed blob.
    static Checkpoint from_bytes(std::span<const uint8_t> bytes);
  };
  Checkpoint checkpoint() const;
  static StreamingTokenizer resume(std::shared_ptr<const Vocab> vocab, TokenizeOptions options, const Checkpoint& at,
                                   StreamingOptions stream_options = {});

  uint64_t bytes_in() const;
  uint64_t replaced_bytes() const;  // invalid UTF-8 bytes replaced so far
  uint64_t forced_cuts() const;     // cuts made without a safe cut point (see StreamingOptions)
  size_t pending_bytes() const;     // text held back because a later byte could still change its ids

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ilre::model
