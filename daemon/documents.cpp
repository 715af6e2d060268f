#include "daemon/documents.h"

#include "api/random_id.h"

#include <spdlog/spdlog.h>

#include <filesystem>

namespace fs = std::filesystem;

namespace ilre::daemon {
namespace {
constexpr const char* kScratch = ".scratch";
constexpr const char* kTrash = ".trash";

std::string random_suffix() { return api::random_hex(12); }
}  // namespace

Documents::Documents(std::shared_ptr<Engine> engine, std::string data_dir)
    : engine_(std::move(engine)), data_dir_(std::move(data_dir)) {}

bool Documents::valid_id(const std::string& id) {
  if (id.empty() || id.size() > 128 || id[0] == '.' || id[0] == '-') return false;
  for (const char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::string Documents::scratch_dir() const { return (fs::path(data_dir_) / kScratch).string(); }

Result<size_t> Documents::load() {
  std::error_code ec;
  fs::create_directories(data_dir_, ec);
  if (ec) return make_error(errc::io_failed, "cannot create the data directory '" + data_dir_ + "': " + ec.message());
  fs::remove_all(fs::path(data_dir_) / kScratch, ec);
  fs::remove_all(fs::path(data_dir_) / kTrash, ec);
  std::lock_guard<std::mutex> lock(mutex_);
  for (fs::directory_iterator it(data_dir_, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string id = it->path().filename().string();
    if (!it->is_directory() || !valid_id(id)) continue;
    if (!fs::exists(it->path() / "manifest.json")) {
      // A create that was killed before its manifest was written: no document was acknowledged.
      spdlog::warn("removing '{}': a store directory without a manifest", it->path().string());
      fs::remove_all(it->path(), ec);
      ec.clear();
      continue;
    }
    auto store = engine_->open_store(it->path().string());
    if (!store) {
      spdlog::warn("skipping document '{}': {}", id, store.error().what());
      continue;
    }
    auto doc = std::make_shared<Document>();
    doc->id = id;
    doc->dir = it->path().string();
    docs_[id] = std::move(doc);
  }
  if (ec) return make_error(errc::io_failed, "cannot list '" + data_dir_ + "': " + ec.message());
  return docs_.size();
}

Result<Documents::Created> Documents::create(const std::string& wanted, bool staged) {
  std::string id = wanted.empty() ? "doc-" + random_suffix() : wanted;
  if (!valid_id(id)) {
    return make_error(errc::invalid_argument,
                      "document id '" + id + "' must be 1-128 characters of A-Z a-z 0-9 . _ - and not start with . or -");
  }
  std::lock_guard<std::mutex> lock(mutex_);
  if (docs_.count(id)) return Created{docs_[id], true};
  auto doc = std::make_shared<Document>();
  doc->id = id;
  doc->dir = (fs::path(data_dir_) / id).string();
  // A directory this daemon did not list at start (copied in, or another daemon's on a shared disk) is
  // not silently adopted.
  if (std::error_code ec; fs::exists(doc->dir, ec)) return Created{nullptr, true};
  if (staged) {
    std::error_code ec;
    fs::create_directories(scratch_dir(), ec);
    doc->dir = (fs::path(scratch_dir()) / ("create-" + id + "-" + random_suffix())).string();
    doc->staged = true;
  }
  auto stream = engine_->open_stream(doc->dir);
  if (!stream) return tl::unexpected(stream.error());
  doc->stream = std::move(*stream);
  docs_[id] = doc;
  return Created{std::move(doc), false};
}

Result<void> Documents::publish(Document& doc) {
  const fs::path final_dir = fs::path(data_dir_) / doc.id;
  doc.stream.reset();  // it names the staging folder; the next append reopens the published store
  std::error_code ec;
  fs::rename(doc.dir, final_dir, ec);
  if (ec) return make_error(errc::io_failed, "cannot publish document '" + doc.id + "': " + ec.message());
  std::lock_guard<std::mutex> lock(mutex_);
  doc.dir = final_dir.string();
  doc.staged = false;
  return {};
}

std::shared_ptr<Document> Documents::find(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = docs_.find(id);
  if (it == docs_.end() || it->second->staged) return nullptr;
  // A store removed behind the daemon's back (a shared data dir, an operator) is an unknown document.
  std::error_code ec;
  if (!fs::exists(fs::path(it->second->dir) / "manifest.json", ec)) {
    docs_.erase(it);
    return nullptr;
  }
  return it->second;
}

std::vector<std::shared_ptr<Document>> Documents::list() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<std::shared_ptr<Document>> out;
  for (const auto& [id, d] : docs_) out.push_back(d);
  return out;
}

Result<void> Documents::remove(const std::string& id) {
  std::shared_ptr<Document> doc;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = docs_.find(id);
    if (it != docs_.end() && it->second->staged) {  // a create that did not complete
      std::error_code ec;
      it->second->stream.reset();
      fs::remove_all(it->second->dir, ec);
      docs_.erase(it);
      return {};
    }
  }
  doc = find(id);
  if (!doc) return make_error(errc::not_found, "no document '" + id + "'");
  std::unique_lock<std::mutex> write(doc->write_mutex, std::try_to_lock);
  if (!write.owns_lock()) return make_error(errc::invalid_argument, "document '" + id + "' has an append running");
  doc->stream.reset();  // releases the store's writer lock
  // Renamed away first, so the document vanishes at once and a crash mid-delete leaves no half store.
  std::error_code ec;
  const fs::path trash = fs::path(data_dir_) / kTrash;
  fs::create_directories(trash, ec);
  const fs::path gone = trash / (id + "-" + random_suffix());
  fs::rename(doc->dir, gone, ec);
  if (ec) return make_error(errc::io_failed, "cannot remove document '" + id + "': " + ec.message());
  {
    std::lock_guard<std::mutex> lock(mutex_);
    docs_.erase(id);
  }
  fs::remove_all(gone, ec);
  return {};
}

}  // namespace ilre::daemon
