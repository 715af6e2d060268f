#include "storage/file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace ilre::storage {

int PosixFileIo::open_write(const std::string& path, int* fd) {
  int f;
  do {
    f = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  } while (f < 0 && errno == EINTR);
  if (f < 0) return errno;
  *fd = f;
  return 0;
}

int PosixFileIo::write(int fd, const uint8_t* data, size_t n, size_t* written) {
  ssize_t w;
  do {
    w = ::write(fd, data, n);
  } while (w < 0 && errno == EINTR);
  if (w < 0) return errno;
  *written = static_cast<size_t>(w);
  return 0;
}

int PosixFileIo::fsync(int fd) { return ::fsync(fd) == 0 ? 0 : errno; }

int PosixFileIo::close(int fd) {
  // Linux closes the descriptor even when close() reports EINTR, so never retry it.
  return ::close(fd) == 0 ? 0 : errno;
}

int PosixFileIo::rename(const std::string& from, const std::string& to) {
  return ::rename(from.c_str(), to.c_str()) == 0 ? 0 : errno;
}

int PosixFileIo::unlink(const std::string& path) { return ::unlink(path.c_str()) == 0 ? 0 : errno; }

int PosixFileIo::fsync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno;
  int err = ::fsync(fd) == 0 ? 0 : errno;
  // Some file systems refuse fsync on a directory; that only weakens durability, never consistency.
  if (err == EINVAL || err == EROFS) err = 0;
  ::close(fd);
  return err;
}

std::shared_ptr<FileIo> posix_file_io() {
  static const std::shared_ptr<FileIo> io = std::make_shared<PosixFileIo>();
  return io;
}

Error errno_error(int err, std::string_view op, const std::filesystem::path& path) {
  const std::string what = std::string(op) + " " + path.string() + ": " + std::strerror(err);
  if (err == ENOSPC || err == EDQUOT) {
    return Error{errc::disk_full, "disk full: " + what + " (free space and retry; the store is unchanged)"};
  }
  return Error{errc::io_failed, what};
}

Result<void> write_file_atomic(FileIo& io, const std::filesystem::path& path,
                               std::span<const std::span<const uint8_t>> parts, bool sync,
                               AtomicWriteOutcome* outcome) {
  if (outcome) outcome->renamed = false;
  const std::string final_path = path.string();
  const std::string tmp_path = final_path + std::string(kTmpSuffix);
  int fd = -1;
  if (int err = io.open_write(tmp_path, &fd)) return tl::unexpected(errno_error(err, "create", tmp_path));

  auto fail = [&](int err, std::string_view op) -> Result<void> {
    if (fd >= 0) io.close(fd);
    io.unlink(tmp_path);  // best effort: frees the space a partial write took
    return tl::unexpected(errno_error(err, op, tmp_path));
  };

  for (std::span<const uint8_t> part : parts) {
    const uint8_t* p = part.data();
    size_t left = part.size();
    while (left > 0) {
      size_t written = 0;
      if (int err = io.write(fd, p, left, &written)) return fail(err, "write");
      if (written == 0) return fail(ENOSPC, "write");  // a regular file only writes 0 bytes when full
      p += written;
      left -= written;
    }
  }
  if (sync) {
    if (int err = io.fsync(fd)) return fail(err, "fsync");
  }
  {
    const int f = fd;
    fd = -1;
    // close() can report a deferred write error (NFS, quota): treat it like a write error.
    if (int err = io.close(f)) return fail(err, "close");
  }
  if (int err = io.rename(tmp_path, final_path)) {
    io.unlink(tmp_path);
    return tl::unexpected(errno_error(err, "rename to " + final_path + " from", tmp_path));
  }
  if (outcome) outcome->renamed = true;
  if (sync) {
    const std::string dir = path.has_parent_path() ? path.parent_path().string() : std::string(".");
    if (int err = io.fsync_dir(dir)) return tl::unexpected(errno_error(err, "fsync directory", dir));
  }
  return {};
}

Result<void> read_file_prefix(const std::filesystem::path& path, uint64_t expect_size, uint64_t n, std::vector<uint8_t>& dst,
                              const char* what) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) {
      return make_error(errc::io_failed, std::string(what) + " " + path.string() + " listed in the manifest is missing");
    }
    return tl::unexpected(errno_error(err, "open", path));
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st{};
  if (::fstat(fd, &st) != 0) return tl::unexpected(errno_error(errno, "stat", path));
  if (static_cast<uint64_t>(st.st_size) != expect_size) {
    return make_error(errc::checksum_mismatch, std::string(what) + " " + path.string() + " has " +
                                                   std::to_string(st.st_size) + " bytes, the manifest says " +
                                                   std::to_string(expect_size) + " (truncated or replaced)");
  }
  dst.resize(n);
  uint64_t done = 0;
  while (done < n) {
    const ssize_t r = ::pread(fd, dst.data() + done, n - done, static_cast<off_t>(done));
    if (r < 0) {
      if (errno == EINTR) continue;
      return tl::unexpected(errno_error(errno, "read", path));
    }
    if (r == 0) {
      return make_error(errc::checksum_mismatch, std::string(what) + " " + path.string() + " is truncated");
    }
    done += static_cast<uint64_t>(r);
  }
  return {};
}


}  // namespace ilre::storage
