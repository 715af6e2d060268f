// What the library tests share: a stories260K configuration small enough to run end to end in seconds, and
// a deterministic text made of a few sentences.
#pragma once

#include <initializer_list>
#include <string>

#include "ilre/config.h"
#include "support/paths.h"

namespace ilre::test {

// l_R 2, chunks of 64 tokens, window 128, sink 8, 256-token segments, budget 96, 12 answer tokens.
inline Config stories_config() {
  Config c;
  c.model.path = data_model("stories260K-f32.gguf");
  c.model.threads = 2;
  c.prefill.layer = 2;
  c.prefill.chunk = 64;
  c.prefill.window = 128;
  c.prefill.sink = 8;
  c.store.segment_tokens = 256;
  c.recall.budget = 96;
  c.decode.max_tokens = 12;
  return c;
}

// `sentences` sentences drawn from `parts` in a fixed order that does not repeat with a short period.
inline std::string sentences_of(std::initializer_list<const char*> parts, int sentences) {
  std::string s;
  const int n = static_cast<int>(parts.size());
  for (int i = 0; i < sentences; ++i) s += *(parts.begin() + (i * 7 + i / 3) % n);
  return s;
}

}  // namespace ilre::test
