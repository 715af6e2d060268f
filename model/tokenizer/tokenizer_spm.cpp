// SentencePiece-style tokenizer ("llama" vocabularies), the algorithm of llama.cpp's llm_tokenizer_spm:
// split the fragment into UTF-8 characters (lengths judged from the lead byte), then repeatedly merge the
// adjacent pair whose concatenation is the vocabulary entry with the highest score (ties: leftmost pair),
// and finally emit each symbol's id, or byte-fallback tokens <0xXX> for symbols not in the vocabulary.
//
// O(n log n): a binary heap of candidate pairs; a popped pair is stale when either side has changed length
// since it was pushed (symbols only grow), which is llama.cpp's test too. llama.cpp's rev_merge resegmentation
// is never reached: a merged symbol is always a vocabulary entry, and a single character cannot equal the
// concatenation of two symbols, so every symbol either is a token or is one unknown character.
#include <algorithm>

#include "ilre/error.h"
#include "model/tokenizer/tokenizer_internal.h"
#include "model/tokenizer/unicode.h"

namespace ilre::model::detail {

namespace {

struct Symbol {
  int32_t prev;
  int32_t next;
  uint32_t start;
  uint32_t n;
  int32_t token;  // id once merged (merged symbols are always vocabulary entries)
};

// The right symbol is not stored: it is the left symbol's next when the pair is still valid (a changed pair
// always has a changed total length, see the staleness test below).
struct Bigram {
  float score;
  int32_t left;
  uint32_t size;
  int32_t token;
};

// Max-heap order of llama.cpp's llm_bigram_spm::comparator: highest score first, then the leftmost pair.
struct BigramLess {
  bool operator()(const Bigram& l, const Bigram& r) const {
    return l.score < r.score || (l.score == r.score && l.left > r.left);
  }
};

}  // namespace

void spm_tokenize(const VocabImpl& vocab, std::string_view text, std::vector<TokenId>& out) {
  if (text.empty()) return;
  std::vector<Symbol> syms;
  syms.reserve(text.size());
  for (size_t off = 0; off < text.size();) {
    const size_t len = std::min(unicode::utf8_len_from_lead(static_cast<uint8_t>(text[off])), text.size() - off);
    const auto idx = static_cast<int32_t>(syms.size());
    syms.push_back(Symbol{idx - 1, idx + 1, static_cast<uint32_t>(off), static_cast<uint32_t>(len), -1});
    off += len;
  }
  syms.back().next = -1;

  const size_t max_len = vocab.max_token_len();
  std::vector<Bigram> heap;
  heap.reserve(syms.size());
  const BigramLess less;
  bool seeding = true;
  auto try_add = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const Symbol& l = syms[static_cast<size_t>(left)];
    const Symbol& r = syms[static_cast<size_t>(right)];
    const size_t size = static_cast<size_t>(l.n) + r.n;
    if (size > max_len) return;
    const int32_t id = vocab.lookup(text.substr(l.start, size));
    if (id < 0) return;
    heap.push_back(Bigram{vocab.score(id), left, static_cast<uint32_t>(size), id});
    if (!seeding) std::push_heap(heap.begin(), heap.end(), less);
  };

  // Pop order depends only on (score, left), which is unique among current pairs, so building the heap in one
  // go gives the same merges as pushing the seeds one by one.
  for (size_t i = 1; i < syms.size(); ++i) try_add(static_cast<int32_t>(i - 1), static_cast<int32_t>(i));
  std::make_heap(heap.begin(), heap.end(), less);
  seeding = false;

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), less);
    const Bigram b = heap.back();
    heap.pop_back();
    Symbol& l = syms[static_cast<size_t>(b.left)];
    // Symbols only grow, by absorbing their right neighbour. If the pair's left symbol absorbed its old right
    // neighbour, l.n alone already reaches b.size and the new neighbour makes the sum larger; if the right one
    // grew, the sum is larger too. So "l.n + next.n == size" holds exactly while the queued pair is current.
    if (l.n == 0 || l.next < 0) continue;
    Symbol& r = syms[static_cast<size_t>(l.next)];
    if (l.n + r.n != b.size) continue;
    l.n += r.n;
    r.n = 0;
    l.token = b.token;
    const int32_t after = r.next;
    l.next = after;
    if (after >= 0) syms[static_cast<size_t>(after)].prev = b.left;
    try_add(l.prev, b.left);
    try_add(b.left, l.next);
  }

  for (int32_t i = 0; i != -1; i = syms[static_cast<size_t>(i)].next) {
    const Symbol& s = syms[static_cast<size_t>(i)];
    if (s.token >= 0) {
      out.push_back(s.token);
      continue;
    }
    const std::string_view piece = text.substr(s.start, s.n);
    const int32_t id = vocab.lookup(piece);
    if (id >= 0) {
      out.push_back(id);
      continue;
    }
    for (char ch : piece) {
      const TokenId bt = vocab.byte_token(static_cast<uint8_t>(ch));
      if (bt < 0) {
        throw Exception(errc::unsupported, "the vocabulary has no byte-fallback token for byte " +
                                               std::to_string(static_cast<int>(static_cast<uint8_t>(ch))) +
                                               " (needed for a character it cannot spell)");
      }
      out.push_back(bt);
    }
  }
}

}  // namespace ilre::model::detail
