// Byte-level BPE ("gpt2" vocabularies): llama.cpp's pre-tokenizer splits (unicode_regex_split with its
// hand-written scanners for the GPT-2 and Llama-3 expressions), GPT-2's byte -> code point mapping, and
// rank-ordered merges (llm_tokenizer_bpe_session).
//
// Supported pre-tokenizers and the expressions they implement (code points, categories from unicode.h):
//   gpt2:      's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   llama3:    (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
//              \s*[\r\n]+|\s+(?!\S)|\s+
//   qwen2:     llama3 with \p{N} instead of \p{N}{1,3}
//   starcoder: \p{N} (each number isolated), then gpt2
//   default:   [\p{P}\$\+<=>\^~\|]+ , then gpt2, then \p{N}+ , then [0-9][0-9][0-9] (each expression splits
//              the pieces of the previous one into matches and the gaps between them, like llama.cpp's
//              std::regex passes over its "collapsed" text)
#include <algorithm>

#include "model/tokenizer/tokenizer_internal.h"
#include "model/tokenizer/unicode.h"

namespace ilre::model::detail {

namespace {

using namespace unicode;

constexpr uint32_t kOutOfRange = 0xFFFFFFFF;

// Scanner over one piece [0, n) of code points; positions past the end read as "no code point" (flags 0).
struct Piece {
  const uint32_t* c;
  size_t n;
  uint32_t cpt(size_t i) const { return i < n ? c[i] : kOutOfRange; }
  uint16_t flags(size_t i) const { return i < n ? cpt_flags(c[i]) : 0; }
};

class Emitter {
 public:
  explicit Emitter(std::vector<size_t>& out) : out_(out) {}
  void to(size_t end) {
    if (end > prev_) out_.push_back(end - prev_);
    prev_ = end;
  }

 private:
  std::vector<size_t>& out_;
  size_t prev_ = 0;
};

constexpr uint16_t kWLN = kWhitespace | kLetter | kNumber;

// The last alternatives of both pre-tokenizer regexes, for `nws` whitespace code points at pos: '\s+(?!\S)'
// (the run minus its last one when something follows), else '\s+', else one code point on its own.
// Returns where the piece ends.
size_t whitespace_or_single(const Piece& p, size_t pos, size_t nws) {
  if (nws > 1 && p.cpt(pos + nws) != kOutOfRange) return pos + nws - 1;
  if (nws > 0) return pos + nws;
  return pos + 1;
}

void split_gpt2(const Piece& p, std::vector<size_t>& out) {
  Emitter emit(out);
  for (size_t pos = 0; pos < p.n;) {
    const uint32_t cpt = p.c[pos];
    const uint16_t f = p.flags(pos);
    if (cpt == '\'' && pos + 1 < p.n) {
      const uint32_t c1 = p.c[pos + 1];
      if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') {
        pos += 2;
        emit.to(pos);
        continue;
      }
      if (pos + 2 < p.n) {
        const uint32_t c2 = p.c[pos + 2];
        if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) {
          pos += 3;
          emit.to(pos);
          continue;
        }
      }
    }
    const uint16_t f2 = cpt == ' ' ? p.flags(pos + 1) : f;
    if (f2 & kLetter) {  // ' ?\p{L}+'
      pos += cpt == ' ';
      while (p.flags(pos) & kLetter) ++pos;
      emit.to(pos);
      continue;
    }
    if (f2 & kNumber) {  // ' ?\p{N}+'
      pos += cpt == ' ';
      while (p.flags(pos) & kNumber) ++pos;
      emit.to(pos);
      continue;
    }
    if (!(f2 & kWLN) && f2 != 0) {  // ' ?[^\s\p{L}\p{N}]+'
      pos += cpt == ' ';
      while (p.flags(pos) != 0 && !(p.flags(pos) & kWLN)) ++pos;
      emit.to(pos);
      continue;
    }
    size_t nws = 0;
    while (p.flags(pos + nws) & kWhitespace) ++nws;
    pos = whitespace_or_single(p, pos, nws);
    emit.to(pos);
  }
}

uint32_t ascii_lower(uint32_t c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

void split_llama3(const Piece& p, size_t max_digits, std::vector<size_t>& out) {
  Emitter emit(out);
  for (size_t pos = 0; pos < p.n;) {
    const uint32_t cpt = p.c[pos];
    const uint16_t f = p.flags(pos);
    if (cpt == '\'' && pos + 1 < p.n) {  // (?i:'s|'t|'re|'ve|'m|'ll|'d)
      const uint32_t c1 = ascii_lower(p.c[pos + 1]);
      if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') {
        pos += 2;
        emit.to(pos);
        continue;
      }
      if (pos + 2 < p.n) {
        const uint32_t c2 = ascii_lower(p.c[pos + 2]);
        if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) {
          pos += 3;
          emit.to(pos);
          continue;
        }
      }
    }
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (!(cpt == '\r' || cpt == '\n' || (f & kNumber))) {
      if ((f & kLetter) || (p.flags(pos + 1) & kLetter)) {
        ++pos;
        while (p.flags(pos) & kLetter) ++pos;
        emit.to(pos);
        continue;
      }
    }
    // \p{N}{1,max_digits}
    if (f & kNumber) {
      size_t ini = pos;
      while (p.flags(pos) & kNumber) {
        if (++pos - ini >= max_digits) {
          emit.to(pos);
          ini = pos;
        }
      }
      emit.to(pos);
      continue;
    }
    // ' ?[^\s\p{L}\p{N}]+[\r\n]*' (llama.cpp tests the original code point's flags for "in range" here)
    const uint16_t f2 = cpt == ' ' ? p.flags(pos + 1) : f;
    if (!(f2 & kWLN) && f != 0) {
      pos += cpt == ' ';
      while (p.flags(pos) != 0 && !(p.flags(pos) & kWLN)) ++pos;
      while (p.cpt(pos) == '\r' || p.cpt(pos) == '\n') ++pos;
      emit.to(pos);
      continue;
    }
    size_t nws = 0;
    size_t last_rn = 0;
    while (p.flags(pos + nws) & kWhitespace) {
      const uint32_t c2 = p.cpt(pos + nws);
      if (c2 == '\r' || c2 == '\n') last_rn = pos + nws + 1;
      ++nws;
    }
    if (last_rn > 0) {  // '\s*[\r\n]+'
      pos = last_rn;
      emit.to(pos);
      continue;
    }
    pos = whitespace_or_single(p, pos, nws);
    emit.to(pos);
  }
}

// Splits a piece into maximal runs of code points in a class and the gaps between them ("[class]+").
template <class InClass>
void split_runs(const Piece& p, InClass in, std::vector<size_t>& out) {
  Emitter emit(out);
  size_t pos = 0;
  while (pos < p.n) {
    const bool cls = in(p.c[pos]);
    while (pos < p.n && in(p.c[pos]) == cls) ++pos;
    emit.to(pos);
  }
}

// "[class]" (no quantifier): each code point of the class on its own, gaps between.
template <class InClass>
void split_singles(const Piece& p, InClass in, std::vector<size_t>& out) {
  Emitter emit(out);
  size_t pos = 0;
  while (pos < p.n) {
    if (in(p.c[pos])) {
      emit.to(++pos);
      continue;
    }
    while (pos < p.n && !in(p.c[pos])) ++pos;
    emit.to(pos);
  }
}

// "[0-9][0-9][0-9]": leftmost non-overlapping triples of ASCII digits, gaps between.
void split_digit_triples(const Piece& p, std::vector<size_t>& out) {
  Emitter emit(out);
  auto digit = [&](size_t i) { return i < p.n && p.c[i] >= '0' && p.c[i] <= '9'; };
  size_t pos = 0;
  while (pos + 3 <= p.n) {
    if (digit(pos) && digit(pos + 1) && digit(pos + 2)) {
      emit.to(pos);
      pos += 3;
      emit.to(pos);
    } else {
      ++pos;
    }
  }
  emit.to(p.n);
}

// Collapsed-regex classes of llama.cpp's default pre-tokenizer. ASCII code points are matched literally by
// the class text; others by their category (non-ASCII whitespace never matches).
bool in_default_punct(uint32_t c) {
  if (c < 128) {
    return (c >= '!' && c <= '/' ) || (c >= ':' && c <= '@') || (c >= '[' && c <= '^') || c == '_' ||
           (c >= '{' && c <= '~');
  }
  const uint16_t f = cpt_flags(c);
  return !(f & kWhitespace) && (f & kCategoryMask) == kPunctuation;
}

bool in_number(uint32_t c) {
  if (c < 128) return c >= '0' && c <= '9';
  const uint16_t f = cpt_flags(c);
  return !(f & kWhitespace) && (f & kCategoryMask) == kNumber;
}

// Applies one splitting pass to every current piece.
template <class Split>
void refine(const uint32_t* cpts, std::vector<size_t>& pieces, Split split) {
  std::vector<size_t> next;
  next.reserve(pieces.size() * 2);
  size_t start = 0;
  for (size_t len : pieces) {
    split(Piece{cpts + start, len}, next);
    start += len;
  }
  pieces.swap(next);
}

enum class Cls { letter, number, space, other };
Cls cls(uint32_t c) {
  const uint16_t f = cpt_flags(c);
  if (f & kWhitespace) return Cls::space;
  if (f & kLetter) return Cls::letter;
  if (f & kNumber) return Cls::number;
  return Cls::other;
}

bool gpt2_safe(uint32_t a, uint32_t b) {
  const Cls ca = cls(a);
  return ca != Cls::space && a != '\'' && ca != cls(b);
}

bool llama3_safe(uint32_t a, uint32_t b, bool single_digits) {
  const Cls ca = cls(a);
  const Cls cb = cls(b);
  switch (ca) {
    case Cls::letter:
      return cb != Cls::letter;
    case Cls::number:
      return single_digits || cb != Cls::number;
    case Cls::other:
      return cb == Cls::number || (cb == Cls::space && b != '\r' && b != '\n');
    case Cls::space:
      return (a == '\r' || a == '\n') && cb != Cls::space;
  }
  return false;
}

}  // namespace

void pre_tokenize(PreTokenizer pre, const uint32_t* cpts, size_t n, std::vector<size_t>& words) {
  words.clear();
  if (n == 0) return;
  const Piece whole{cpts, n};
  switch (pre) {
    case PreTokenizer::gpt2:
      split_gpt2(whole, words);
      break;
    case PreTokenizer::llama3:
      split_llama3(whole, 3, words);
      break;
    case PreTokenizer::qwen2:
      split_llama3(whole, 1, words);
      break;
    case PreTokenizer::starcoder:
      split_singles(whole, in_number, words);
      refine(cpts, words, [](const Piece& p, std::vector<size_t>& out) { split_gpt2(p, out); });
      break;
    case PreTokenizer::default_bpe:
      split_runs(whole, in_default_punct, words);
      refine(cpts, words, [](const Piece& p, std::vector<size_t>& out) { split_gpt2(p, out); });
      refine(cpts, words, [](const Piece& p, std::vector<size_t>& out) { split_runs(p, in_number, out); });
      refine(cpts, words, [](const Piece& p, std::vector<size_t>& out) { split_digit_triples(p, out); });
      break;
  }
}

// Why these cuts are safe. Every scanner above decides a word from its start position and the code points
// after it, never before it, so if the whole text has a word boundary at the cut, the words after the cut
// come out the same when scanning starts there. The rules below admit a cut a|b only if (1) the word
// containing a must end at a whatever follows b, and (2) a scan of the text ending at a ends that word at a
// as well (the rules only consult b, so truncation, which hides b, cannot change the decision):
//   gpt2: a is no blank and no apostrophe (which could start 's) and a, b differ in class (letter / number /
//         blank / other): letter and number runs stop at a class change, a punctuation run stops at a
//         letter, number or blank, and no expression puts a non-blank before a blank.
//   llama3/qwen2: a letter run ends before a non-letter; a digit group ends before a non-digit (qwen2: every
//         digit is a word); punctuation may be followed by [\r\n]* or be the prefix of a letter run, so it
//         is safe only before a digit or a blank other than \r\n; \s*[\r\n]+ ends at the last \r or \n of a
//         blank run, so \r or \n is safe only before a non-blank.
//   starcoder: every number code point is a piece of its own, elsewhere as gpt2.
//   default: the first pass cuts wherever membership of [\p{P}$+<=>^~|] changes; inside a non-member stretch
//         the gpt2 rule applies; the later passes only split words further.
bool pre_tokenizer_safe_cut(PreTokenizer pre, uint32_t a, uint32_t b) {
  switch (pre) {
    case PreTokenizer::gpt2:
      return gpt2_safe(a, b);
    case PreTokenizer::llama3:
      return llama3_safe(a, b, false);
    case PreTokenizer::qwen2:
      return llama3_safe(a, b, true);
    case PreTokenizer::starcoder:
      return in_number(a) || in_number(b) || gpt2_safe(a, b);
    case PreTokenizer::default_bpe: {
      const bool pa = in_default_punct(a);
      const bool pb = in_default_punct(b);
      if (pa != pb) return true;
      return !pa && gpt2_safe(a, b);
    }
  }
  return false;
}

// ---------------------------------------------------------------------------------------------------------
// Merges

namespace {

struct Symbol {
  int32_t prev;
  int32_t next;
  uint32_t start;
  uint32_t n;
  int32_t id;  // vocabulary id of the symbol's text, -1 if none
};

struct Bigram {
  int32_t rank;
  int32_t left;
  int32_t right;
  uint32_t left_n;
  uint32_t right_n;
};

// Max-heap order of llama.cpp's llm_bigram_bpe::comparator: lowest rank first, then the leftmost pair.
struct BigramLess {
  bool operator()(const Bigram& l, const Bigram& r) const {
    return l.rank > r.rank || (l.rank == r.rank && l.left > r.left);
  }
};

void bpe_word(const VocabImpl& vocab, std::string_view word, std::vector<Symbol>& syms, std::vector<Bigram>& heap,
              std::vector<TokenId>& out) {
  if (vocab.ignore_merges()) {
    const int32_t id = vocab.lookup(word);
    if (id >= 0) {
      out.push_back(id);
      return;
    }
  }
  syms.clear();
  heap.clear();
  for (size_t off = 0; off < word.size();) {
    const size_t len =
        std::min(unicode::utf8_len_from_lead(static_cast<uint8_t>(word[off])), word.size() - off);
    const auto idx = static_cast<int32_t>(syms.size());
    syms.push_back(Symbol{idx - 1, idx + 1, static_cast<uint32_t>(off), static_cast<uint32_t>(len),
                          vocab.lookup(word.substr(off, len))});
    off += len;
  }
  if (syms.empty()) return;
  syms.back().next = -1;

  const BigramLess less;
  auto text_of = [&](const Symbol& s) { return word.substr(s.start, s.n); };
  auto add = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const Symbol& l = syms[static_cast<size_t>(left)];
    const Symbol& r = syms[static_cast<size_t>(right)];
    const int32_t rank = vocab.merge_rank(text_of(l), l.id, text_of(r), r.id);
    if (rank < 0) return;
    heap.push_back(Bigram{rank, left, right, l.n, r.n});
    std::push_heap(heap.begin(), heap.end(), less);
  };
  for (size_t i = 1; i < syms.size(); ++i) add(static_cast<int32_t>(i - 1), static_cast<int32_t>(i));

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), less);
    const Bigram b = heap.back();
    heap.pop_back();
    Symbol& l = syms[static_cast<size_t>(b.left)];
    Symbol& r = syms[static_cast<size_t>(b.right)];
    // Outdated when either side changed since the pair was queued (llama.cpp compares the texts).
    if (l.n == 0 || r.n == 0 || l.n != b.left_n || r.n != b.right_n) continue;
    l.n += r.n;
    r.n = 0;
    l.id = vocab.lookup(text_of(l));
    l.next = r.next;
    if (r.next >= 0) syms[static_cast<size_t>(r.next)].prev = b.left;
    add(l.prev, b.left);
    add(b.left, l.next);
  }

  for (int32_t i = 0; i != -1; i = syms[static_cast<size_t>(i)].next) {
    const Symbol& s = syms[static_cast<size_t>(i)];
    if (s.id >= 0) {
      out.push_back(s.id);
      continue;
    }
    // Not a vocabulary entry: llama.cpp looks up each raw byte and drops those it cannot find.
    for (char ch : text_of(s)) {
      const int32_t id = vocab.lookup(std::string_view(&ch, 1));
      if (id >= 0) out.push_back(id);
    }
  }
}

}  // namespace

void bpe_tokenize(const VocabImpl& vocab, std::string_view text, std::vector<TokenId>& out) {
  const std::vector<uint32_t> cpts = unicode::decode_lenient_all(text);
  std::vector<size_t> words;
  pre_tokenize(vocab.pre(), cpts.data(), cpts.size(), words);
  std::string raw;
  std::string mapped;
  std::vector<Symbol> syms;
  std::vector<Bigram> heap;
  size_t start = 0;
  for (size_t len : words) {
    raw.clear();
    for (size_t i = start; i < start + len; ++i) unicode::append_utf8(raw, cpts[i]);
    start += len;
    mapped.clear();
    for (char ch : raw) mapped += unicode::byte_to_utf8(static_cast<uint8_t>(ch));
    bpe_word(vocab, mapped, syms, heap, out);
  }
}

}  // namespace ilre::model::detail
