// The lexical prior of recall.policy = hybrid: how many of the question's words (weighted by their rarity in
// the document, BM25's idf) occur within a window around each document token. Real text answers a question
// in a sentence that repeats its rare words ("the default timeout of ..."), which attention at one layer can
// miss on long documents; the prior lifts those neighbourhoods and the attention scores still order them.
//
// Words are tokens normalised to their lower-case letters and digits ("▁Default" and "default" are one
// word); tokens without a letter or digit, and words under 2 characters that are not numbers, are not words.
// Everything is computed from the token ids in one pass, so a store needs no extra index.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

namespace ilre::retrieval {

// Token id -> word id (-1: not a word), cached per id.
class WordMap {
 public:
  using PieceFn = std::function<std::string(int32_t)>;
  explicit WordMap(PieceFn piece) : piece_(std::move(piece)) {}
  int32_t word_of(int32_t token);
  // The normalised text of a token ("" when it is not a word).
  static std::string normalise(const std::string& piece);

 private:
  PieceFn piece_;
  std::unordered_map<int32_t, int32_t> by_token_;
  std::unordered_map<std::string, int32_t> by_text_;
};

struct LexicalConfig {
  int64_t window = 32;        // tokens each side of a token that count as its neighbourhood
  int64_t passage = 128;      // tokens per passage for the document frequencies behind idf
};

// Per document token: the idf-weighted share of the question's distinct words that occur within `window`
// tokens of it, in [0, 1]; all zeros when the question has no word of the document.
std::vector<float> lexical_scores(std::span<const int32_t> doc, std::span<const int32_t> question, WordMap& words,
                                  const LexicalConfig& cfg);

// scores[i] *= exp(weight * lexical[i]): multiplicative, so it needs no common scale with the attention scores.
void fuse_lexical(std::span<float> scores, std::span<const float> lexical, double weight);

}  // namespace ilre::retrieval
