#include "retrieval/lexical.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <unordered_set>

namespace ilre::retrieval {

std::string WordMap::normalise(const std::string& piece) {
  std::string out;
  bool digits_only = true;
  for (unsigned char c : piece) {
    if (std::isalnum(c)) {
      out += static_cast<char>(std::tolower(c));
      digits_only = digits_only && std::isdigit(c);
    } else if (c >= 0x80) {
      out += static_cast<char>(c);  // non-ASCII letters stay as they are (and "▁" is not alnum: see below)
      digits_only = false;
    }
  }
  // SentencePiece's word-start mark U+2581 (E2 96 81) is not part of the word.
  for (size_t at; (at = out.find("\xE2\x96\x81")) != std::string::npos;) out.erase(at, 3);
  if (out.empty() || (out.size() < 2 && !digits_only)) return {};
  return out;
}

int32_t WordMap::word_of(int32_t token) {
  if (auto it = by_token_.find(token); it != by_token_.end()) return it->second;
  const std::string text = normalise(piece_(token));
  int32_t id = -1;
  if (!text.empty()) id = by_text_.try_emplace(text, static_cast<int32_t>(by_text_.size())).first->second;
  by_token_.emplace(token, id);
  return id;
}

std::vector<float> lexical_scores(std::span<const int32_t> doc, std::span<const int32_t> question, WordMap& words,
                                  const LexicalConfig& cfg) {
  const auto n = static_cast<int64_t>(doc.size());
  std::vector<float> out(doc.size(), 0.0f);
  std::unordered_map<int32_t, size_t> slot;  // question word -> index
  for (int32_t t : question) {
    const int32_t w = words.word_of(t);
    if (w >= 0) slot.try_emplace(w, slot.size());
  }
  if (slot.empty() || n == 0) return out;
  // One scan: every occurrence of a question word, and in how many passages each occurs.
  std::vector<std::vector<int64_t>> at(slot.size());
  std::vector<int64_t> df(slot.size(), 0), last_passage(slot.size(), -1);
  for (int64_t i = 0; i < n; ++i) {
    const auto it = slot.find(words.word_of(doc[static_cast<size_t>(i)]));
    if (it == slot.end()) continue;
    at[it->second].push_back(i);
    const int64_t p = i / std::max<int64_t>(1, cfg.passage);
    if (last_passage[it->second] != p) {
      last_passage[it->second] = p;
      ++df[it->second];
    }
  }
  const double n_passages = std::ceil(static_cast<double>(n) / static_cast<double>(std::max<int64_t>(1, cfg.passage)));
  // Coverage by a difference array: word k adds idf_k over the union of [p - w, p + w] of its occurrences.
  std::vector<double> diff(doc.size() + 1, 0.0);
  double total = 0.0;
  for (size_t k = 0; k < at.size(); ++k) {
    const double d = static_cast<double>(df[k]);
    const double idf = std::log(1.0 + (n_passages - d + 0.5) / (d + 0.5));  // BM25's, >= 0
    total += idf;
    int64_t open_end = -1;  // end (exclusive) of the interval being merged
    int64_t open_start = 0;
    for (int64_t p : at[k]) {
      const int64_t s = std::max<int64_t>(0, p - cfg.window), e = std::min(n, p + cfg.window + 1);
      if (s > open_end) {
        if (open_end > 0) {
          diff[static_cast<size_t>(open_start)] += idf;
          diff[static_cast<size_t>(open_end)] -= idf;
        }
        open_start = s;
      }
      open_end = std::max(open_end, e);
    }
    if (open_end > 0) {
      diff[static_cast<size_t>(open_start)] += idf;
      diff[static_cast<size_t>(open_end)] -= idf;
    }
  }
  if (!(total > 0.0)) return out;
  double run = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    run += diff[static_cast<size_t>(i)];
    out[static_cast<size_t>(i)] = static_cast<float>(std::clamp(run / total, 0.0, 1.0));
  }
  return out;
}

void fuse_lexical(std::span<float> scores, std::span<const float> lexical, double weight) {
  const size_t n = std::min(scores.size(), lexical.size());
  for (size_t i = 0; i < n; ++i) scores[i] *= static_cast<float>(std::exp(weight * static_cast<double>(lexical[i])));
}

}  // namespace ilre::retrieval
