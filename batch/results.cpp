#include "batch/results.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "api/json.h"

namespace fs = std::filesystem;

namespace ilre::batch {
namespace {

Error io_error(const std::string& what, const std::string& path) {
  const errc code = errno == ENOSPC || errno == EDQUOT ? errc::disk_full : errc::io_failed;
  return Error{code, what + " '" + path + "': " + std::strerror(errno)};
}

Result<void> write_all(int fd, const std::string& s, const std::string& path) {
  size_t off = 0;
  while (off < s.size()) {
    const ssize_t n = ::write(fd, s.data() + off, s.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return tl::unexpected(io_error("cannot write", path));
    off += static_cast<size_t>(n);
  }
  return {};
}

// Complete lines of the file and the byte length they span (a torn tail is not part of it).
struct Scan {
  std::vector<nlohmann::json> lines;
  uint64_t good_bytes = 0;
};

Result<Scan> scan(const std::string& path) {
  Scan s;
  std::ifstream in(path, std::ios::binary);
  if (!in) return s;
  std::string line;
  uint64_t offset = 0;
  while (std::getline(in, line)) {
    if (in.eof()) break;  // no newline after it: torn by a kill mid-write
    offset += line.size() + 1;
    if (line.find_first_not_of(" \t\r") == std::string::npos) {
      s.good_bytes = offset;
      continue;
    }
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded()) {
      // Only the last line can be torn; a bad line in the middle means someone else wrote this file.
      if (in.peek() == EOF) break;
      return make_error(errc::bad_json, "results file '" + path + "' has a line that is not JSON at byte " +
                                            std::to_string(offset - line.size() - 1) + "; it is not a file this job wrote");
    }
    s.lines.push_back(std::move(j));
    s.good_bytes = offset;
  }
  return s;
}

}  // namespace

ResultsFile::ResultsFile(std::string path, int fd, KeyOf key_of) : path_(std::move(path)), fd_(fd), key_of_(std::move(key_of)) {}

ResultsFile::~ResultsFile() {
  if (fd_ >= 0) ::close(fd_);
}

Result<std::unique_ptr<ResultsFile>> ResultsFile::open(const std::string& path, KeyOf key_of) {
  std::error_code ec;
  if (fs::path(path).has_parent_path()) fs::create_directories(fs::path(path).parent_path(), ec);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return tl::unexpected(io_error("cannot open the results file", path));
  // One run per results file: two processes appending to it (two shards given the same output) would
  // cut each other's lines when they repair a torn tail.
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return make_error(errc::invalid_argument, "another run is writing '" + path +
                                                  "' (shards need an output each; see deploy/slurm/batch.sbatch)");
  }
  auto s = scan(path);
  if (!s) {
    ::close(fd);
    return tl::unexpected(s.error());
  }
  // Cut a torn last line so the next line starts on its own.
  if (::ftruncate(fd, static_cast<off_t>(s->good_bytes)) != 0 || ::lseek(fd, 0, SEEK_END) < 0) {
    ::close(fd);
    return tl::unexpected(io_error("cannot repair the results file", path));
  }
  std::unique_ptr<ResultsFile> f(new ResultsFile(path, fd, std::move(key_of)));
  for (const auto& j : s->lines) {
    const std::string k = f->key_of_(j);
    if (k.empty()) continue;
    f->done_.insert(k);
    if (j.contains("error") && !j["error"].is_null()) f->failed_.insert(k);
  }
  return f;
}

bool ResultsFile::done(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return done_.count(key) != 0;
}

bool ResultsFile::failed(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return failed_.count(key) != 0;
}

size_t ResultsFile::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return done_.size();
}

Result<void> ResultsFile::append(const nlohmann::json& line) {
  const std::string text = api::dump(line) + "\n";
  std::lock_guard<std::mutex> lock(mutex_);
  const std::string key = key_of_(line);
  if (!key.empty() && done_.count(key)) return {};  // never twice
  const off_t before = ::lseek(fd_, 0, SEEK_END);
  if (auto r = write_all(fd_, text, path_); !r) {
    // A partial line (disk full) is cut so the file stays a sequence of whole lines.
    if (before >= 0 && ::ftruncate(fd_, before) == 0) ::lseek(fd_, before, SEEK_SET);
    return r;
  }
  if (::fdatasync(fd_) != 0) return tl::unexpected(io_error("cannot sync", path_));
  if (!key.empty()) done_.insert(key);
  if (!key.empty() && line.contains("error") && !line["error"].is_null()) failed_.insert(key);
  return {};
}

Result<std::vector<nlohmann::json>> ResultsFile::read(const std::string& path) {
  auto s = scan(path);
  if (!s) return tl::unexpected(s.error());
  return std::move(s->lines);
}

Result<void> write_file_atomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  std::error_code ec;
  if (fs::path(path).has_parent_path()) fs::create_directories(fs::path(path).parent_path(), ec);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return tl::unexpected(io_error("cannot write", tmp));
  auto w = write_all(fd, text, tmp);
  if (w && ::fsync(fd) != 0) w = tl::unexpected(io_error("cannot sync", tmp));
  ::close(fd);
  if (!w) return w;
  if (::rename(tmp.c_str(), path.c_str()) != 0) return tl::unexpected(io_error("cannot rename into", path));
  return {};
}

}  // namespace ilre::batch
