// spill — layer-l_R key blocks -> the document's key store on disk (storage/: zstd segments, checksums,
// atomic manifest). Segments end where the prefill attached a streaming state (every segment_tokens), so
// an interrupted ingest leaves a store that is consistent and resumable up to its last complete segment.
#pragma once

#include <string_view>
#include <vector>

#include "engine/stage.h"
#include "stages/messages.h"
#include "storage/store_writer.h"

namespace ilre::stages {

struct SpillTotals {
  int64_t tokens = 0;
  int64_t segments = 0;
  uint64_t raw_key_bytes = 0;     // keys in the store dtype, uncompressed
  uint64_t stored_key_bytes = 0;  // after shuffle + zstd
  uint64_t stored_bytes = 0;      // whole segment files
  double encode_seconds = 0;
  double write_seconds = 0;
  int64_t nonfinite_keys = 0;
};

class SpillStage {
 public:
  using In = KeyBlock;
  static constexpr std::string_view kName = "spill";

  // max_buffer_tokens bounds memory if blocks never carry a state (a segment is written anyway).
  SpillStage(storage::StoreWriter& writer, int64_t max_buffer_tokens);
  Result<void> start(engine::StageContext& ctx);
  Result<void> process(KeyBlock&& in);
  Result<void> finish();

  const SpillTotals& totals() const { return totals_; }
  bool saw_end() const { return saw_end_; }

 private:
  Result<void> flush();

  storage::StoreWriter& writer_;
  int64_t max_buffer_tokens_;
  std::vector<float> keys_;
  std::vector<int32_t> tokens_;
  int64_t first_pos_ = -1;
  SpillTotals totals_;
  bool saw_end_ = false;
  engine::StageContext* ctx_ = nullptr;
};

}  // namespace ilre::stages
