// Helpers shared by the storage tests: store metadata, deterministic keys, byte edits, a fault-injecting
// FileIo.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "model/kernels/quant.h"
#include "storage/file_io.h"
#include "storage/store_reader.h"
#include "storage/store_writer.h"
#include "support/paths.h"

namespace ilre::storage::test {

namespace fs = std::filesystem;

inline StoreMeta tiny_meta(KeyDtype dtype = KeyDtype::f16, int32_t n_kv_heads = 2, int32_t head_dim = 16) {
  StoreMeta m;
  m.model_fingerprint = "sha256:tiny-model-0001";
  m.model_name = "tiny-test-model";
  m.retrieval_layer = 1;
  m.n_kv_heads = n_kv_heads;
  m.head_dim = head_dim;
  m.dtype = dtype;
  m.config = {{"chunk", 512}, {"sink", 64}, {"temperature", 0.25}, {"name", "ünïcode ok"}};
  return m;
}

// A fresh directory path (not created) for a store.
inline fs::path store_dir(const std::string& tag) { return fs::path(ilre::test::scratch_dir("storage-" + tag)) / "store"; }

// Keys [n, width] that are exactly representable in `dtype`, smooth in position with per-channel scales,
// deterministic in (seed, first_pos).
inline std::vector<float> make_keys(int64_t first_pos, int64_t n, int32_t width, KeyDtype dtype = KeyDtype::f16,
                                    uint32_t seed = 7) {
  std::vector<float> k(static_cast<size_t>(n) * static_cast<size_t>(width));
  for (int64_t t = 0; t < n; ++t) {
    for (int32_t c = 0; c < width; ++c) {
      const double pos = static_cast<double>(first_pos + t);
      const double scale = std::pow(10.0, -1.0 + 2.0 * c / std::max(1, width - 1));
      const double v = scale * std::sin(0.01 * pos * (1 + c % 7) + seed + c) +
                       0.01 * scale * std::cos(pos * 1.3 + c);
      const float f = static_cast<float>(v);
      k[static_cast<size_t>(t) * static_cast<size_t>(width) + static_cast<size_t>(c)] =
          dtype == KeyDtype::f16 ? model::fp16_to_fp32(model::fp32_to_fp16(f))
                                 : model::bf16_to_fp32(model::fp32_to_bf16(f));
    }
  }
  return k;
}

inline std::vector<int32_t> make_tokens(int64_t first_pos, int64_t n) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t[static_cast<size_t>(i)] = static_cast<int32_t>((first_pos + i) * 7919 % 50000);
  return t;
}

inline std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

inline void write_text(const fs::path& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << s;
}

inline void flip_byte(const fs::path& p, uint64_t offset) {
  std::string s = read_text(p);
  ASSERT_LT(offset, s.size());
  s[offset] = static_cast<char>(s[offset] ^ 0x10);
  write_text(p, s);
}

// Files under dir (recursively) whose name ends in ".tmp".
inline std::vector<std::string> tmp_files(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.path().filename().string().ends_with(".tmp")) out.push_back(e.path().string());
  }
  return out;
}

// Fails one chosen step of the write path, once, for files whose path contains `path_contains`.
class FaultIo : public PosixFileIo {
 public:
  enum class Op { open, write, fsync, close, rename, fsync_dir };

  void arm(Op op, std::string path_contains, int err = ENOSPC, int skip = 0) {
    op_ = op;
    path_contains_ = std::move(path_contains);
    err_ = err;
    skip_ = skip;
    armed_ = true;
  }
  void disarm() { armed_ = false; }
  int fired() const { return fired_; }

  int open_write(const std::string& path, int* fd) override {
    if (should_fire(Op::open, path)) return err_;
    const int r = PosixFileIo::open_write(path, fd);
    if (r == 0) paths_[*fd] = path;
    return r;
  }
  int write(int fd, const uint8_t* data, size_t n, size_t* written) override {
    if (partial_fd_ == fd) {  // the write after a partial one fails, like a disk that just filled up
      partial_fd_ = -1;
      return err_;
    }
    if (should_fire(Op::write, paths_[fd])) {
      if (n > 1) {  // first put half the bytes on disk, so there is a partial tmp file to clean up
        partial_fd_ = fd;
        return PosixFileIo::write(fd, data, n / 2, written);
      }
      return err_;
    }
    return PosixFileIo::write(fd, data, n, written);
  }
  int fsync(int fd) override {
    if (should_fire(Op::fsync, paths_[fd])) return err_;
    return PosixFileIo::fsync(fd);
  }
  int close(int fd) override {
    const std::string path = paths_[fd];
    paths_.erase(fd);
    const int r = PosixFileIo::close(fd);
    if (should_fire(Op::close, path)) return err_;
    return r;
  }
  int rename(const std::string& from, const std::string& to) override {
    if (should_fire(Op::rename, to)) return err_;
    return PosixFileIo::rename(from, to);
  }
  int fsync_dir(const std::string& dir) override {
    if (should_fire(Op::fsync_dir, dir)) return err_;
    return PosixFileIo::fsync_dir(dir);
  }

 private:
  bool should_fire(Op op, const std::string& path) {
    if (!armed_ || op != op_ || path.find(path_contains_) == std::string::npos) return false;
    if (skip_ > 0) {
      --skip_;
      return false;
    }
    armed_ = false;
    ++fired_;
    return true;
  }

  Op op_ = Op::write;
  std::string path_contains_;
  int err_ = ENOSPC;
  int skip_ = 0;
  bool armed_ = false;
  int fired_ = 0;
  int partial_fd_ = -1;
  std::map<int, std::string> paths_;
};

}  // namespace ilre::storage::test
