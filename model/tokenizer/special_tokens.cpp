// Exact-text lookup table and the special-token partition (llama.cpp's tokenizer_st_partition).
//
// Why the Aho-Corasick formulation gives llama.cpp's result. llama.cpp keeps a list of fragments (free text
// or placed tokens); for each special token t in priority order it scans every free fragment left to right
// with string::find, places t at each match and continues after it (after the right-stripped whitespace when
// t has RSTRIP; whitespace before a match is dropped when t has LSTRIP). So for one token t:
//   * an occurrence [s, s+len) of t is placed iff it lies inside one free fragment and starts at or after
//     the end of t's previous placement in that fragment (leftmost-first, non-overlapping);
//   * fragments only shrink, so "inside one free fragment" == "overlaps no interval placed so far".
// Walking t's occurrences in increasing order and applying exactly these two tests therefore places the same
// intervals as llama.cpp's scan. Occurrences come from one automaton pass over the text; tokens with many
// occurrences (runs of blanks) instead re-search the free gaps after their first occurrence with
// string_view::find, which is llama.cpp's own procedure (there is no occurrence before the first one).
#include <algorithm>
#include <cstring>
#include <map>

#include "model/tokenizer/tokenizer_internal.h"

namespace ilre::model::detail {

// ---------------------------------------------------------------------------------------------------------
// TokenTable

namespace {

inline uint64_t mix64(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

inline uint64_t load_head(const char* p, size_t n) {
  uint64_t k = 0;
  std::memcpy(&k, p, n < 8 ? n : 8);
  return k;
}

inline uint64_t hash_text(std::string_view s) {
  uint64_t h = 0x9E3779B97F4A7C15ULL ^ (s.size() * 0x2545F4914F6CDD1DULL);
  const char* p = s.data();
  size_t n = s.size();
  do {
    const uint64_t k = load_head(p, n);
    h = (h ^ mix64(k)) * 0x100000001B3ULL;
    p += n < 8 ? n : 8;
    n -= n < 8 ? n : 8;
  } while (n > 0);
  return mix64(h);
}

}  // namespace

int32_t TokenTable::build(const std::vector<std::string>* texts) {
  texts_ = texts;
  size_t cap = 16;
  while (cap < texts->size() * 2) cap <<= 1;
  mask_ = cap - 1;
  slots_.assign(cap, Slot{});
  for (size_t i = 0; i < texts->size(); ++i) {
    const std::string& t = (*texts)[i];
    const uint64_t head = load_head(t.data(), t.size());
    size_t slot = hash_text(t) & mask_;
    while (slots_[slot].id >= 0) {
      const Slot& sl = slots_[slot];
      if (sl.len == t.size() && sl.head == head && (*texts_)[static_cast<size_t>(sl.id)] == t) {
        return static_cast<int32_t>(i);
      }
      slot = (slot + 1) & mask_;
    }
    slots_[slot] = Slot{head, static_cast<uint32_t>(t.size()), static_cast<int32_t>(i)};
  }
  return -1;
}

int32_t TokenTable::find(std::string_view s) const {
  if (slots_.empty() || s.size() > UINT32_MAX) return -1;
  const uint64_t head = load_head(s.data(), s.size());
  size_t slot = hash_text(s) & mask_;
  while (true) {
    const Slot& sl = slots_[slot];
    if (sl.id < 0) return -1;
    if (sl.len == s.size() && sl.head == head &&
        (s.size() <= 8 || std::string_view((*texts_)[static_cast<size_t>(sl.id)]) == s)) {
      return sl.id;
    }
    slot = (slot + 1) & mask_;
  }
}

// ---------------------------------------------------------------------------------------------------------
// PairSet

void PairSet::insert(uint32_t a, uint32_t b) {
  if (a < 128 && b < 128) {
    const uint32_t bit = a * 128 + b;
    uint64_t& w = ascii_[bit / 64];
    const uint64_t m = uint64_t{1} << (bit % 64);
    if (!(w & m)) ++n_;
    w |= m;
    return;
  }
  if ((n_table_ + 1) * 2 > table_.size()) grow();
  const uint64_t key = ((static_cast<uint64_t>(a) << 32) | b) + 1;
  const size_t mask = table_.size() - 1;
  size_t slot = mix64(key) & mask;
  while (table_[slot] != 0) {
    if (table_[slot] == key) return;
    slot = (slot + 1) & mask;
  }
  table_[slot] = key;
  ++n_table_;
  ++n_;
}

bool PairSet::contains(uint32_t a, uint32_t b) const {
  if (a < 128 && b < 128) {
    const uint32_t bit = a * 128 + b;
    return (ascii_[bit / 64] >> (bit % 64)) & 1;
  }
  if (table_.empty()) return false;
  const uint64_t key = ((static_cast<uint64_t>(a) << 32) | b) + 1;
  const size_t mask = table_.size() - 1;
  size_t slot = mix64(key) & mask;
  while (table_[slot] != 0) {
    if (table_[slot] == key) return true;
    slot = (slot + 1) & mask;
  }
  return false;
}

void PairSet::grow() {
  std::vector<uint64_t> old;
  old.swap(table_);
  table_.assign(old.empty() ? 1024 : old.size() * 2, 0);
  const size_t mask = table_.size() - 1;
  for (uint64_t key : old) {
    if (key == 0) continue;
    size_t slot = mix64(key) & mask;
    while (table_[slot] != 0) slot = (slot + 1) & mask;
    table_[slot] = key;
  }
}

// ---------------------------------------------------------------------------------------------------------
// SpecialTokens

namespace {
// isspace() in the "C" locale, which is what llama.cpp's strip rules call on each byte.
inline bool c_isspace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}
}  // namespace

void SpecialTokens::build(std::vector<TokenId> order, const std::vector<std::string>& texts,
                          const std::vector<uint32_t>& attrs) {
  order_ = std::move(order);
  const size_t n = order_.size();
  text_.resize(n);
  plain_.resize(n);
  lstrip_.resize(n);
  rstrip_.resize(n);
  has_strip_ = false;
  for (size_t r = 0; r < n; ++r) {
    const auto id = static_cast<size_t>(order_[r]);
    text_[r] = texts[id];
    plain_[r] = (attrs[id] & (kAttrControl | kAttrUnknown)) == 0;
    lstrip_[r] = (attrs[id] & kAttrLstrip) != 0;
    rstrip_[r] = (attrs[id] & kAttrRstrip) != 0;
    has_strip_ = has_strip_ || lstrip_[r] || rstrip_[r];
  }

  // Trie with unsorted child lists, then compressed to sorted edge arrays.
  std::vector<std::vector<std::pair<uint8_t, int32_t>>> children(1);
  std::vector<int32_t> pattern(1, -1);
  for (size_t r = 0; r < n; ++r) {
    int32_t node = 0;
    for (char ch : text_[r]) {
      const auto c = static_cast<uint8_t>(ch);
      int32_t next = -1;
      for (const auto& [b, child] : children[static_cast<size_t>(node)]) {
        if (b == c) {
          next = child;
          break;
        }
      }
      if (next < 0) {
        next = static_cast<int32_t>(children.size());
        children[static_cast<size_t>(node)].emplace_back(c, next);
        children.emplace_back();
        pattern.push_back(-1);
      }
      node = next;
    }
    // Texts are distinct (the vocabulary rejects duplicates), so a node ends at most one pattern.
    pattern[static_cast<size_t>(node)] = static_cast<int32_t>(r);
  }
  nodes_.assign(children.size(), Node{});
  edge_byte_.clear();
  edge_child_.clear();
  for (size_t v = 0; v < children.size(); ++v) {
    auto& ch = children[v];
    std::sort(ch.begin(), ch.end());
    nodes_[v].pattern = pattern[v];
    nodes_[v].edge_begin = static_cast<uint32_t>(edge_byte_.size());
    for (const auto& [b, child] : ch) {
      edge_byte_.push_back(b);
      edge_child_.push_back(child);
    }
    nodes_[v].edge_end = static_cast<uint32_t>(edge_byte_.size());
  }
  root_next_.fill(0);
  for (uint32_t e = nodes_[0].edge_begin; e < nodes_[0].edge_end; ++e) root_next_[edge_byte_[e]] = edge_child_[e];

  // Breadth-first failure links.
  std::vector<int32_t> queue;
  queue.reserve(nodes_.size());
  for (uint32_t e = nodes_[0].edge_begin; e < nodes_[0].edge_end; ++e) {
    const int32_t child = edge_child_[e];
    nodes_[static_cast<size_t>(child)].fail = 0;
    nodes_[static_cast<size_t>(child)].dict = -1;
    queue.push_back(child);
  }
  for (size_t qi = 0; qi < queue.size(); ++qi) {
    const int32_t u = queue[qi];
    const Node& nu = nodes_[static_cast<size_t>(u)];
    for (uint32_t e = nu.edge_begin; e < nu.edge_end; ++e) {
      const int32_t v = edge_child_[e];
      const int32_t f = step(nodes_[static_cast<size_t>(u)].fail, edge_byte_[e]);
      Node& nv = nodes_[static_cast<size_t>(v)];
      nv.fail = f;
      const Node& nf = nodes_[static_cast<size_t>(f)];
      nv.dict = nf.pattern >= 0 ? f : nf.dict;
      queue.push_back(v);
    }
  }
}

int32_t SpecialTokens::step(int32_t state, uint8_t c) const {
  while (state != 0) {
    const Node& n = nodes_[static_cast<size_t>(state)];
    // Edges are sorted; most nodes have one or two.
    uint32_t lo = n.edge_begin;
    uint32_t hi = n.edge_end;
    while (lo < hi) {
      const uint32_t mid = (lo + hi) / 2;
      if (edge_byte_[mid] < c) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    if (lo < n.edge_end && edge_byte_[lo] == c) return edge_child_[lo];
    state = n.fail;
  }
  return root_next_[c];
}

void SpecialTokens::partition(std::string_view text, bool parse_special, std::vector<Fragment>& out) const {
  out.clear();
  if (text.empty()) return;
  const size_t n = text.size();
  if (order_.empty()) {
    out.push_back(Fragment{false, -1, 0, n});
    return;
  }

  // 1. All occurrences of eligible special texts, grouped by token: the first kExplicit starts of each are
  // kept; a token seen more often is "saturated" (only its first start matters, it is searched for later).
  // Saturated and ineligible patterns are "dead"; `jump` (path-compressed, allocated once some pattern
  // saturates) skips runs of dead patterns on the output chains, so 1 MB of blanks does not walk the 30
  // blank-run patterns at every byte.
  constexpr size_t kExplicit = 64;
  struct Occ {
    uint32_t rank;
    bool saturated;
    size_t first;
    std::vector<size_t> starts;
  };
  std::vector<Occ> occ;
  std::vector<int32_t> slot_of;  // by rank; allocated at the first match
  std::vector<int32_t> jump;     // by node: a node at or after it on the output chain (all between are dead)
  auto dead = [&](int32_t node) {
    const auto rank = static_cast<size_t>(nodes_[static_cast<size_t>(node)].pattern);
    if (!eligible(rank, parse_special)) return true;
    const int32_t slot = slot_of.empty() ? -1 : slot_of[rank];
    return slot >= 0 && occ[static_cast<size_t>(slot)].saturated;
  };
  auto next_on_chain = [&](int32_t node) {
    const auto i = static_cast<size_t>(node);
    return jump.empty() || jump[i] == node ? nodes_[i].dict : jump[i];
  };
  auto first_live = [&](int32_t node) {
    int32_t r = node;
    while (r >= 0 && dead(r)) r = next_on_chain(r);
    if (!jump.empty()) {
      for (int32_t x = node; x >= 0 && x != r;) {
        const int32_t nx = next_on_chain(x);
        jump[static_cast<size_t>(x)] = r;
        x = nx;
      }
    }
    return r;
  };
  int32_t state = 0;
  for (size_t i = 0; i < n; ++i) {
    state = step(state, static_cast<uint8_t>(text[i]));
    const Node& node = nodes_[static_cast<size_t>(state)];
    int32_t t = node.pattern >= 0 ? state : node.dict;
    while ((t = first_live(t)) >= 0) {
      const auto rank = static_cast<uint32_t>(nodes_[static_cast<size_t>(t)].pattern);
      const size_t start = i + 1 - text_[rank].size();
      if (slot_of.empty()) slot_of.assign(order_.size(), -1);
      int32_t& slot = slot_of[rank];
      if (slot < 0) {
        slot = static_cast<int32_t>(occ.size());
        occ.push_back(Occ{rank, false, start, {}});
      }
      Occ& o = occ[static_cast<size_t>(slot)];
      if (o.starts.size() < kExplicit) {
        o.starts.push_back(start);
      } else {
        o.saturated = true;
        o.starts.clear();
        if (jump.empty()) {
          jump.resize(nodes_.size());
          for (size_t k = 0; k < jump.size(); ++k) jump[k] = static_cast<int32_t>(k);
        }
      }
      t = next_on_chain(t);
    }
  }
  if (occ.empty()) {
    out.push_back(Fragment{false, -1, 0, n});
    return;
  }
  std::sort(occ.begin(), occ.end(), [](const Occ& a, const Occ& b) { return a.rank < b.rank; });

  // 2. Place tokens in priority order. placed: begin -> (end, token); [begin, end) includes any whitespace
  // stripped next to the token.
  struct Placed {
    size_t end;
    TokenId token;
  };
  std::map<size_t, Placed> placed;
  auto is_free = [&](size_t b, size_t e) {
    auto it = placed.lower_bound(b);
    if (it != placed.end() && it->first < e) return false;
    if (it != placed.begin() && std::prev(it)->second.end > b) return false;
    return true;
  };
  for (const Occ& o : occ) {
    const size_t r = o.rank;
    const std::string_view pat = text_[r];
    const size_t len = pat.size();
    const TokenId id = order_[r];
    // Places the match at s (free), returns where t's next search starts.
    auto place = [&](size_t s) {
      auto it = placed.lower_bound(s);
      const size_t gap_end = it == placed.end() ? n : it->first;
      const size_t gap_begin = it == placed.begin() ? 0 : std::prev(it)->second.end;
      size_t b = s;
      size_t e = s + len;
      if (lstrip_[r]) {
        while (b > gap_begin && c_isspace(text[b - 1])) --b;
      }
      if (rstrip_[r]) {
        while (e < gap_end && c_isspace(text[e])) ++e;
      }
      placed.emplace_hint(it, b, Placed{e, id});
      return e;
    };
    if (!o.saturated) {
      size_t next_from = 0;
      for (size_t s : o.starts) {
        if (s < next_from || !is_free(s, s + len)) continue;
        next_from = place(s);
      }
      continue;
    }
    // Many occurrences: search the free gaps from the first one on.
    size_t pos = o.first;
    while (pos < n) {
      auto it = placed.upper_bound(pos);
      if (it != placed.begin()) {
        const auto prev = std::prev(it);
        if (prev->second.end > pos) {
          pos = prev->second.end;
          continue;
        }
      }
      const size_t gap_end = it == placed.end() ? n : it->first;
      const size_t m = gap_end >= pos + len ? text.substr(0, gap_end).find(pat, pos) : std::string_view::npos;
      if (m == std::string_view::npos) {
        if (it == placed.end()) break;
        pos = it->second.end;
        continue;
      }
      pos = place(m);
    }
  }

  // 3. Fragments in text order.
  size_t cur = 0;
  for (const auto& [b, p] : placed) {
    if (b > cur) out.push_back(Fragment{false, -1, cur, b - cur});
    out.push_back(Fragment{true, p.token, 0, 0});
    cur = p.end;
  }
  if (cur < n) out.push_back(Fragment{false, -1, cur, n - cur});
}

}  // namespace ilre::model::detail
