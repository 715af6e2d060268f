// read — the source of an ingest: document bytes from a file, stdin, a pipe or memory, in bounded chunks.
#pragma once

#include <istream>
#include <memory>
#include <string>
#include <string_view>

#include "engine/stage.h"
#include "ilre/error.h"
#include "stages/messages.h"

namespace ilre::stages {

// Where document bytes come from. read() returns 0 at end of input; it may block briefly but must return
// within ~100 ms when nothing arrives (returning -1 = "try again") so cancellation stays prompt.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  virtual Result<int64_t> read(char* buf, int64_t max) = 0;
  virtual std::string describe() const = 0;
};

// A file (or "-" for stdin). Pipes and terminals are polled so a cancelled ingest never hangs on them.
Result<std::unique_ptr<ByteSource>> open_file_source(const std::string& path);
// A C++ stream owned by the caller (library users). std::istream cannot be polled, so a cancel takes effect
// when the current read returns.
std::unique_ptr<ByteSource> stream_source(std::istream& in, std::string name);
// Bytes the caller already has (library users, tests).
std::unique_ptr<ByteSource> memory_source(std::string bytes);

class ReadStage {
 public:
  using Out = DocBytes;
  static constexpr std::string_view kName = "read";

  ReadStage(std::unique_ptr<ByteSource> source, int64_t chunk_bytes);
  Result<void> start(engine::StageContext& ctx);
  Result<bool> produce(engine::Emitter<DocBytes>& out);
  int64_t bytes_read() const { return bytes_; }

 private:
  std::unique_ptr<ByteSource> source_;
  int64_t chunk_bytes_;
  int64_t seq_ = 0;
  int64_t bytes_ = 0;
  engine::StageContext* ctx_ = nullptr;
};

}  // namespace ilre::stages
