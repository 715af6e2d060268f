#include "stages/read.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace ilre::stages {
namespace {

class FdSource final : public ByteSource {
 public:
  FdSource(int fd, std::string name, bool owned, bool pollable)
      : fd_(fd), name_(std::move(name)), owned_(owned), pollable_(pollable) {}
  ~FdSource() override {
    if (owned_) ::close(fd_);
  }
  Result<int64_t> read(char* buf, int64_t max) override {
    if (pollable_) {
      pollfd p{fd_, POLLIN, 0};
      const int r = ::poll(&p, 1, 100);
      if (r == 0) return -1;  // nothing yet: let the actor check for cancellation
      if (r < 0 && errno != EINTR) return make_error(errc::io_failed, "poll on " + name_ + ": " + std::strerror(errno));
      if (r < 0) return -1;
    }
    for (;;) {
      const ssize_t n = ::read(fd_, buf, static_cast<size_t>(max));
      if (n >= 0) return static_cast<int64_t>(n);
      if (errno == EINTR) continue;
      return make_error(errc::io_failed, "reading " + name_ + ": " + std::strerror(errno));
    }
  }
  std::string describe() const override { return name_; }

 private:
  int fd_;
  std::string name_;
  bool owned_;
  bool pollable_;
};

class MemorySource final : public ByteSource {
 public:
  explicit MemorySource(std::string bytes) : bytes_(std::move(bytes)) {}
  Result<int64_t> read(char* buf, int64_t max) override {
    const auto n = std::min<int64_t>(max, static_cast<int64_t>(bytes_.size() - at_));
    std::memcpy(buf, bytes_.data() + at_, static_cast<size_t>(n));
    at_ += static_cast<size_t>(n);
    return n;
  }
  std::string describe() const override { return "<memory>"; }

 private:
  std::string bytes_;
  size_t at_ = 0;
};

class StreamSource final : public ByteSource {
 public:
  StreamSource(std::istream& in, std::string name) : in_(in), name_(std::move(name)) {}
  Result<int64_t> read(char* buf, int64_t max) override {
    if (in_.eof()) return 0;
    in_.read(buf, max);
    const int64_t n = in_.gcount();
    if (in_.bad()) return make_error(errc::io_failed, "reading " + name_ + ": the stream failed");
    return n;  // 0 with eof set: the end
  }
  std::string describe() const override { return name_; }

 private:
  std::istream& in_;
  std::string name_;
};

}  // namespace

std::unique_ptr<ByteSource> stream_source(std::istream& in, std::string name) {
  return std::make_unique<StreamSource>(in, std::move(name));
}

Result<std::unique_ptr<ByteSource>> open_file_source(const std::string& path) {
  if (path == "-") {
    struct stat st {};
    const bool regular = ::fstat(STDIN_FILENO, &st) == 0 && S_ISREG(st.st_mode);
    return std::unique_ptr<ByteSource>(new FdSource(STDIN_FILENO, "stdin", false, !regular));
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return make_error(errc::io_failed, "cannot open document '" + path + "': " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
    ::close(fd);
    return make_error(errc::io_failed, "document '" + path + "' is not a readable file");
  }
  return std::unique_ptr<ByteSource>(new FdSource(fd, "'" + path + "'", true, !S_ISREG(st.st_mode)));
}

std::unique_ptr<ByteSource> memory_source(std::string bytes) { return std::make_unique<MemorySource>(std::move(bytes)); }

ReadStage::ReadStage(std::unique_ptr<ByteSource> source, int64_t chunk_bytes)
    : source_(std::move(source)), chunk_bytes_(chunk_bytes) {}

Result<void> ReadStage::start(engine::StageContext& ctx) {
  ctx_ = &ctx;
  return {};
}

Result<bool> ReadStage::produce(engine::Emitter<DocBytes>& out) {
  DocBytes msg;
  msg.seq = seq_;
  msg.bytes.resize(static_cast<size_t>(chunk_bytes_));
  auto n = source_->read(msg.bytes.data(), chunk_bytes_);
  if (!n) return tl::unexpected(n.error());
  if (*n < 0) return true;  // nothing available yet
  if (*n == 0) return false;
  msg.bytes.resize(static_cast<size_t>(*n));
  bytes_ += *n;
  ++seq_;
  if (ctx_) ctx_->add_items_out(static_cast<uint64_t>(*n));
  out.emit(std::move(msg));
  return true;
}

}  // namespace ilre::stages
