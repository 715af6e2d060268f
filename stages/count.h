// count — token chunks -> the document's length in tokens. The first pass of a sharded ingest, which must
// know how long the document is before it can cut it into shards of whole segments.
#pragma once

#include <cstdint>
#include <string_view>

#include "engine/stage.h"
#include "stages/messages.h"

namespace ilre::stages {

class CountStage {
 public:
  using In = TokenChunk;
  static constexpr std::string_view kName = "count";

  Result<void> process(TokenChunk&& in) {
    tokens_ = in.first_pos + static_cast<int64_t>(in.tokens.size());
    return {};
  }
  int64_t tokens() const { return tokens_; }

 private:
  int64_t tokens_ = 0;
};

}  // namespace ilre::stages
