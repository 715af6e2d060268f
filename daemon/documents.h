// The daemon's documents: one store per document under the data directory, found again at start-up.
// The directory is the registry (a document exists once its store's manifest does), so a restart or a
// kill -9 needs no second source of truth to agree with.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "ilre/engine.h"

namespace ilre::daemon {

struct Document {
  std::string id;
  std::string dir;
  std::mutex write_mutex;                    // one append (or delete) at a time
  std::unique_ptr<DocumentStream> stream;    // opened at the first append; guarded by write_mutex
  std::atomic<bool> appending{false};
  std::atomic<int64_t> append_bytes{0};      // progress of the running append
  std::atomic<int64_t> append_tokens{0};
  bool staged = false;                       // being created with its first text: not visible yet
};

class Documents {
 public:
  Documents(std::shared_ptr<Engine> engine, std::string data_dir);

  // Lists the stores under the data directory (skipping anything that is not a store of this model, with a
  // warning), and clears the scratch folder of requests that were running when the daemon last stopped.
  Result<size_t> load();

  // A new, empty document stream. id empty: one is made. errc::invalid_argument for a bad id,
  // model_mismatch... and "exists" as errc::invalid_argument with exists=true.
  struct Created {
    std::shared_ptr<Document> doc;
    bool exists = false;
  };
  // staged: the store is made in the scratch folder and the document stays invisible (404) until
  // publish(), so a create with text that fails or is killed leaves nothing behind.
  Result<Created> create(const std::string& id, bool staged = false);
  Result<void> publish(Document& doc);
  std::shared_ptr<Document> find(const std::string& id) const;
  std::vector<std::shared_ptr<Document>> list() const;
  // Removes the document and its store; errc::invalid_argument while an append runs (the caller says 409).
  Result<void> remove(const std::string& id);

  const std::string& data_dir() const { return data_dir_; }
  std::string scratch_dir() const;

  static bool valid_id(const std::string& id);

 private:
  std::shared_ptr<Engine> engine_;
  std::string data_dir_;
  mutable std::mutex mutex_;
  mutable std::map<std::string, std::shared_ptr<Document>> docs_;  // find() forgets vanished stores
};

}  // namespace ilre::daemon
