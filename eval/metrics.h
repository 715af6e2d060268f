// What `ilre eval` measures per case and method: needle-token recall from the recalled indices, and the
// answer against the expected strings (RULER's string match plus a strict exact match).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ilre::eval {

using TokenRange = std::pair<int64_t, int64_t>;  // [start, end) document token positions

// Tokens of each range found in recalled (sorted ascending).
std::vector<int64_t> needle_hits(std::span<const int64_t> recalled, std::span<const TokenRange> ranges);
// Fraction of all needle tokens (every range together) inside recalled; 1 when there are none.
double needle_recall(std::span<const int64_t> recalled, std::span<const TokenRange> ranges);

struct AnswerScore {
  bool exact = false;     // the first line holds exactly the answers (any order, nothing else)
  bool contains = false;  // every answer appears in the output (case-insensitive)
  double score = 0.0;     // fraction of answers that appear: RULER's string_match_all, the "accuracy"
};

AnswerScore score_answer(std::string_view output, const std::vector<std::string>& answers);

}  // namespace ilre::eval
