// Typed messages between pipeline stages. Move-only values; every one carries its sequence number and the
// document position of its first token so order and resumption can be checked downstream.
//
// ingest:  read -> DocBytes -> tokenize -> TokenChunk -> prefill -> KeyBlock -> spill
// ask:     score -> ScoreBlock -> pool -> Selection -> recall -> Prompt -> decode -> AnswerPiece
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "model/tokenizer/vocab.h"
#include "stages/document_state.h"

namespace ilre::stages {

struct DocBytes {
  int64_t seq = 0;
  std::string bytes;  // raw document bytes; may split a UTF-8 sequence, a word or a special token
  DocBytes() = default;
  DocBytes(DocBytes&&) noexcept = default;
  DocBytes& operator=(DocBytes&&) noexcept = default;
};

struct TokenChunk {
  int64_t seq = 0;
  int64_t first_pos = 0;               // document position of tokens[0]
  std::vector<model::TokenId> tokens;  // [n]
  // Set on the last message of an append that leaves the document open (tokens then empty): what the
  // store keeps so the next append continues the same token stream.
  std::optional<StreamTail> tail;
  TokenChunk() = default;
  TokenChunk(TokenChunk&&) noexcept = default;
  TokenChunk& operator=(TokenChunk&&) noexcept = default;
};

struct KeyBlock {
  int64_t seq = 0;
  int64_t first_pos = 0;
  std::vector<model::TokenId> tokens;  // [n]
  std::vector<float> keys;             // F32 [n, n_head_kv*head_dim]: layer l_R keys before RoPE
  // Set on the last message of a document (n may be 0): the streaming state to persist beside the keys.
  std::optional<std::vector<uint8_t>> final_state;
  KeyBlock() = default;
  KeyBlock(KeyBlock&&) noexcept = default;
  KeyBlock& operator=(KeyBlock&&) noexcept = default;
};

struct ScoreBlock {
  int64_t seq = 0;
  int64_t first_pos = 0;
  std::vector<float> scores;  // [n]: attention the query pays each context token at layer l_R
  ScoreBlock() = default;
  ScoreBlock(ScoreBlock&&) noexcept = default;
  ScoreBlock& operator=(ScoreBlock&&) noexcept = default;
};

struct Selection {
  int64_t n_context = 0;             // document tokens scored
  std::vector<int64_t> positions;    // recalled document positions, increasing
  std::vector<float> relevance;      // per position: the selection score that recalled it
  Selection() = default;
  Selection(Selection&&) noexcept = default;
  Selection& operator=(Selection&&) noexcept = default;
};

struct Prompt {
  std::vector<model::TokenId> tokens;            // recalled document tokens, then the query tokens
  std::vector<int32_t> positions;                // one per token (contiguous or original)
  int64_t n_recalled = 0;                        // how many of tokens are document tokens
  int64_t n_context = 0;
  std::vector<std::pair<int64_t, int64_t>> spans;  // recalled [start, end) document ranges
  Prompt() = default;
  Prompt(Prompt&&) noexcept = default;
  Prompt& operator=(Prompt&&) noexcept = default;
};

struct AnswerPiece {
  int64_t seq = 0;
  model::TokenId token = -1;
  std::string text;  // the token's bytes
  AnswerPiece() = default;
  AnswerPiece(AnswerPiece&&) noexcept = default;
  AnswerPiece& operator=(AnswerPiece&&) noexcept = default;
};

}  // namespace ilre::stages
