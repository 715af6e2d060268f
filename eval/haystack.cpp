#include "eval/haystack.h"

#include <algorithm>
#include <random>
#include <stdexcept>

namespace ilre::eval {
namespace {

const char* const kSubjects[] = {"The old miller", "A young teacher", "The harbour master", "My grandmother",
                                 "The village baker", "A tired traveller", "The mayor's clerk", "Our neighbour",
                                 "The night watchman", "A curious child", "The ferry captain", "The librarian"};
const char* const kVerbs[] = {"walked along", "painted", "repaired", "talked about", "counted", "cleaned",
                              "photographed", "measured", "described", "forgot about", "visited", "sketched"};
const char* const kObjects[] = {"the crooked fence", "the river bank", "the wooden bridge", "the market square",
                                "the empty barn", "the church tower", "the orchard wall", "the narrow lane",
                                "the stone well", "the windmill", "the harbour steps", "the school garden"};
const char* const kTimes[] = {"in the morning", "before supper", "after the rain", "on a quiet Sunday",
                              "during the festival", "late in autumn", "at dawn", "while the bells rang"};
const char* const kAfter[] = {"and nobody noticed.", "as the wind picked up.", "and then went home.",
                              "because it seemed important.", "while humming a tune.", "for the third time that week.",
                              "without saying a word.", "and wrote it all down."};

// RULER's noise haystack, cut into sentences so needles land between them.
const char* const kNoise[] = {"The grass is green.", "The sky is blue.", "The sun is yellow.", "Here we go.",
                              "There and back again."};

std::string sentence(std::mt19937_64& rng) {
  auto pick = [&rng](const auto& arr) { return std::string(arr[rng() % std::size(arr)]); };
  return pick(kSubjects) + " " + pick(kVerbs) + " " + pick(kObjects) + " " + pick(kTimes) + " " + pick(kAfter) + " ";
}

std::string filler_sentence(Filler filler, std::mt19937_64& rng, size_t index) {
  if (filler == Filler::noise) return std::string(kNoise[index % std::size(kNoise)]) + " ";
  return sentence(rng);
}

}  // namespace

namespace {

Haystack assemble(const model::Vocab& vocab, const std::vector<std::string>& prose, const std::vector<Needle>& needles);

}  // namespace

Haystack make_haystack(const model::Vocab& vocab, int64_t target_tokens, const std::vector<Needle>& needles,
                       uint64_t seed, Filler filler) {
  std::mt19937_64 rng(seed);
  // Sentences tokenised alone cost a little more than inside the text; top up until the whole document
  // reaches the target.
  std::vector<std::string> prose;
  int64_t approx = 0;
  for (;;) {
    while (approx < target_tokens) {
      prose.push_back(filler_sentence(filler, rng, prose.size()));
      approx += static_cast<int64_t>(vocab.tokenize(prose.back(), {.add_special = false}).size());
    }
    Haystack h = assemble(vocab, prose, needles);
    if (h.n_tokens >= target_tokens) return h;
    approx = h.n_tokens;
  }
}

namespace {

Haystack assemble(const model::Vocab& vocab, const std::vector<std::string>& prose, const std::vector<Needle>& needles) {
  std::vector<size_t> at(needles.size());
  for (size_t i = 0; i < needles.size(); ++i) at[i] = static_cast<size_t>(needles[i].depth * static_cast<double>(prose.size()));
  Haystack h;
  std::vector<std::pair<size_t, size_t>> needle_bytes;
  for (size_t s = 0; s <= prose.size(); ++s) {
    for (size_t i = 0; i < needles.size(); ++i) {
      if (at[i] == s) {
        const size_t begin = h.text.size();
        h.text += needles[i].sentence + " ";
        needle_bytes.emplace_back(begin, h.text.size() - 1);
      }
    }
    if (s < prose.size()) h.text += prose[s];
  }
  // Token positions of each needle from the byte offsets of the document's own tokens (the pieces of the
  // tokenisation concatenate back to the text), so they are exact wherever the tokenizer merges.
  const std::vector<model::TokenId> ids = vocab.tokenize(h.text, {.add_special = true});
  std::vector<size_t> offset(ids.size() + 1, 0);
  std::string rebuilt;
  for (size_t i = 0; i < ids.size(); ++i) {
    const bool special = i == 0 && vocab.add_bos() && ids[0] == vocab.bos();
    if (!special) rebuilt += vocab.token_to_piece(ids[i]);
    offset[i + 1] = rebuilt.size();
  }
  // SentencePiece vocabularies with add_space_prefix tokenise " " + text; the pieces then carry it.
  if (rebuilt.size() == h.text.size() + 1 && rebuilt[0] == ' ' && rebuilt.compare(1, std::string::npos, h.text) == 0) {
    for (size_t& o : offset) o = o > 0 ? o - 1 : 0;
    rebuilt.erase(0, 1);
  }
  if (rebuilt != h.text) throw std::runtime_error("haystack: token pieces do not rebuild the text");
  for (const auto& [b, e] : needle_bytes) {
    int64_t start = -1, end = -1;
    for (size_t i = 0; i < ids.size(); ++i) {
      if (offset[i + 1] > b && offset[i] < e) {
        if (start < 0) start = static_cast<int64_t>(i);
        end = static_cast<int64_t>(i) + 1;
      }
    }
    h.needle_tokens.emplace_back(start, end);
  }
  h.n_tokens = static_cast<int64_t>(ids.size());
  return h;
}

}  // namespace
}  // namespace ilre::eval
