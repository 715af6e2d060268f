// The results of a batch job: a JSONL file that is also its journal. Each line is written whole with one
// write and made durable before the next piece of work is counted as done, so a kill -9 can at most tear
// the last line, which the next run cuts off; every complete line is finished work the rerun skips.
#pragma once

#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_set>
#include <vector>

#include "ilre/error.h"

namespace ilre::batch {

class ResultsFile {
 public:
  using KeyOf = std::function<std::string(const nlohmann::json& line)>;  // empty: the line is not a result

  // Opens or creates `path`; cuts a torn last line; remembers the key of every complete line.
  static Result<std::unique_ptr<ResultsFile>> open(const std::string& path, KeyOf key_of);
  ~ResultsFile();

  bool done(const std::string& key) const;
  bool failed(const std::string& key) const;  // its line carries a non-null "error"
  size_t size() const;
  // Appends one line (compact JSON + '\n') durably. Thread-safe.
  Result<void> append(const nlohmann::json& line);

  // The complete lines of a results file (a torn last line is left out), for status and merge.
  static Result<std::vector<nlohmann::json>> read(const std::string& path);

 private:
  ResultsFile(std::string path, int fd, KeyOf key_of);
  std::string path_;
  int fd_;
  KeyOf key_of_;
  mutable std::mutex mutex_;
  std::unordered_set<std::string> done_, failed_;
};

// Writes `text` to `path` atomically (temporary file, fsync, rename).
Result<void> write_file_atomically(const std::string& path, const std::string& text);

}  // namespace ilre::batch
