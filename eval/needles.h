// Needles for long-context probes: numeric pass keys of chosen widths and key-value sentences, each with
// the question that retrieves it and its answer. Deterministic from a seed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ilre::eval {

struct NeedleSpec {
  std::string kind;      // "passkey" | "kv"
  std::string sentence;  // planted verbatim
  std::string question;
  std::string answer;    // what a correct reply contains
};

// A pass key of `digits` digits behind a label ("the amber vault"), unique per label.
NeedleSpec passkey_needle(int digits, int label, uint64_t seed);
// "The value for the key 'quiet-otter-17' is 'amber-river-482'."
NeedleSpec kv_needle(int index, uint64_t seed);

// A plain-language fact ("The last ferry to Porto departs at half past four.") asked about in other
// words than it is stated in: retrieval by meaning, not by a rare token such as a pass key.
NeedleSpec fact_needle(int index, uint64_t seed);

}  // namespace ilre::eval
