// The state a store keeps beside its keys so a document stream can continue: the streaming prefill's
// caches (sink + window per layer, at a chunk boundary) and, when the stream was left open for another
// append, its tail: the tokenizer's held-back text and the tokens not yet prefilled (fewer than one chunk).
// With the tail kept, parts appended one by one give exactly the tokens and keys of the whole text ingested
// at once, wherever the parts split (inside a word, a UTF-8 sequence or a special token), because the
// tokenizer sees one byte stream and the prefill sees the same chunk boundaries.
//
// Blob layout (inside the store's checksummed state file): the prefill bytes, then (has_tail) u64
// checkpoint size, checkpoint bytes, u64 n_tokens, int32 tokens[n_tokens], then the trailer: u64 prefill
// size, u8 has_tail, "ILREDST1". The trailer goes last so packing appends to the prefill state in place
// (no copy of the caches). A blob that does not end in the magic is a raw prefill state (stores written
// before tails existed).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "ilre/error.h"
#include "model/tokenizer/vocab.h"

namespace ilre::stages {

struct StreamTail {
  model::StreamingTokenizer::Checkpoint tokenizer;
  std::vector<model::TokenId> tokens;  // tokenised, not yet prefilled; they follow the store's last token
};

struct DocumentState {
  std::vector<uint8_t> prefill;     // StreamingPrefill::save_state()
  std::optional<StreamTail> tail;   // set: the document is open (an append continues it exactly)
};

std::vector<uint8_t> pack_document_state(DocumentState state);
// checksum_mismatch on a malformed blob.
Result<DocumentState> unpack_document_state(std::span<const uint8_t> blob);

}  // namespace ilre::stages
