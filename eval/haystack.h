// Deterministic long documents for needle tests: varied prose (not one repeated sentence) from a seed,
// with needle sentences planted at chosen depths. Token positions of each needle are reported so tests
// can check recall against the recalled spans exactly.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/tokenizer/vocab.h"

namespace ilre::eval {

struct Needle {
  std::string sentence;  // planted verbatim
  double depth;          // 0..1 of the document
};

struct Haystack {
  std::string text;
  std::vector<std::pair<int64_t, int64_t>> needle_tokens;  // [start, end) token positions per needle
  int64_t n_tokens = 0;
};

// What fills the space between needles.
enum class Filler {
  prose,  // varied sentences from the seed: the needle differs from its neighbours only in content
  noise,  // RULER's repeated noise ("The grass is green. The sky is blue. ..."): the needle stands out
};

// About target_tokens tokens of filler for vocab, needles at their depths. needle_tokens lists the needles
// in the order they appear in the text (the given order when depths are ascending).
Haystack make_haystack(const model::Vocab& vocab, int64_t target_tokens, const std::vector<Needle>& needles,
                       uint64_t seed, Filler filler = Filler::prose);

}  // namespace ilre::eval
