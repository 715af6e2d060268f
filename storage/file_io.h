// The store's write path reaches the file system only through FileIo, so tests can inject ENOSPC, EIO, a
// failing fsync or rename at any step (see tests/storage/fault_io.h) and check that the store stays
// consistent. The read path uses plain POSIX calls: its faults (corrupt, truncated, missing files) are
// made by editing files on disk.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ilre/error.h"

namespace ilre::storage {

// Every method returns 0 on success or an errno value; none throws.
class FileIo {
 public:
  virtual ~FileIo() = default;
  // Create or truncate `path` for writing (O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, mode 0644).
  virtual int open_write(const std::string& path, int* fd) = 0;
  // One write(2): may write fewer than n bytes; *written gets the count.
  virtual int write(int fd, const uint8_t* data, size_t n, size_t* written) = 0;
  virtual int fsync(int fd) = 0;
  virtual int close(int fd) = 0;
  virtual int rename(const std::string& from, const std::string& to) = 0;
  virtual int unlink(const std::string& path) = 0;
  // fsync of a directory, making renames and unlinks inside it durable.
  virtual int fsync_dir(const std::string& dir) = 0;
};

// The real thing. Methods are virtual so a test can override one step and forward the rest.
class PosixFileIo : public FileIo {
 public:
  int open_write(const std::string& path, int* fd) override;
  int write(int fd, const uint8_t* data, size_t n, size_t* written) override;
  int fsync(int fd) override;
  int close(int fd) override;
  int rename(const std::string& from, const std::string& to) override;
  int unlink(const std::string& path) override;
  int fsync_dir(const std::string& dir) override;
};

std::shared_ptr<FileIo> posix_file_io();

// errno of a failed `op` on `path` -> Error: ENOSPC/EDQUOT -> disk_full, anything else -> io_failed; the
// message names the operation, the file and strerror.
Error errno_error(int err, std::string_view op, const std::filesystem::path& path);

// Suffix of every temporary file; a name ending in it is never part of a consistent store.
inline constexpr std::string_view kTmpSuffix = ".tmp";

struct AtomicWriteOutcome {
  // True once the rename has happened: the new content is visible (though maybe not yet durable if the
  // directory fsync failed afterwards).
  bool renamed = false;
};

// Writes the concatenation of `parts` to `path` atomically: `path`.tmp, write, fsync, close, rename over
// `path`, fsync(parent dir). On any failure before the rename the tmp file is removed and `path` is left
// untouched. `sync` = false skips both fsyncs (tests and benchmarks on throw-away data only).
Result<void> write_file_atomic(FileIo& io, const std::filesystem::path& path,
                               std::span<const std::span<const uint8_t>> parts, bool sync,
                               AtomicWriteOutcome* outcome = nullptr);

// Reads the first n bytes of `path` into dst (resized to n), with plain POSIX reads (the read path needs
// no fault injection). `expect_size`: the whole file's size recorded in a manifest; a different size means
// the file was truncated or replaced (checksum_mismatch). `what` names the file's role in messages.
Result<void> read_file_prefix(const std::filesystem::path& path, uint64_t expect_size, uint64_t n,
                              std::vector<uint8_t>& dst, const char* what);

}  // namespace ilre::storage
