// Faults on the write path: injected ENOSPC/EDQUOT/EIO at every step, a real full tmpfs, kill -9 mid-append.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <random>
#include <thread>

#include "store_test_util.h"

namespace ilre::storage::test {
namespace {

using Op = FaultIo::Op;

// Every segment's keys and tokens are the deterministic function of its positions.
void expect_store_content(const fs::path& dir, int64_t min_tokens = 0) {
  auto r = StoreReader::open(dir);
  ASSERT_TRUE(r) << r.error().what();
  ASSERT_TRUE(r->verify());
  EXPECT_GE(r->n_tokens(), min_tokens);
  const int32_t width = r->meta().key_width();
  Segment seg;
  int64_t next = 0;
  for (size_t i = 0; i < r->segments().size(); ++i) {
    ASSERT_TRUE(r->read_segment_into(i, KeyFormat::f32, seg));
    ASSERT_EQ(seg.first_pos, next);
    EXPECT_EQ(seg.keys_f32, make_keys(seg.first_pos, seg.n_tokens, width)) << "segment " << i;
    EXPECT_EQ(seg.tokens, make_tokens(seg.first_pos, seg.n_tokens)) << "segment " << i;
    next += seg.n_tokens;
  }
  EXPECT_EQ(next, r->n_tokens());
}

Result<SegmentStats> append_next(StoreWriter& w, int64_t n) {
  const int64_t first = w.n_tokens();
  return w.append(make_keys(first, n, w.meta().key_width()), make_tokens(first, n), first);
}

struct FaultCase {
  Op op;
  const char* path;
  int err;
  int skip;
  errc want;
  bool writer_survives;  // false: the failure came after the manifest rename; the writer must stop
};

TEST(StoreFaults, InjectedFailureAtEveryWriteStepLeavesAConsistentStore) {
  const FaultCase cases[] = {
      {Op::open, "seg-", ENOSPC, 0, errc::disk_full, true},
      {Op::write, "seg-", ENOSPC, 0, errc::disk_full, true},
      {Op::write, "seg-", EDQUOT, 0, errc::disk_full, true},
      {Op::fsync, "seg-", ENOSPC, 0, errc::disk_full, true},
      {Op::close, "seg-", EDQUOT, 0, errc::disk_full, true},
      {Op::rename, "seg-", EIO, 0, errc::io_failed, true},
      {Op::fsync_dir, "segments", EIO, 0, errc::io_failed, true},
      {Op::write, "manifest", ENOSPC, 0, errc::disk_full, true},
      {Op::fsync, "manifest", ENOSPC, 0, errc::disk_full, true},
      {Op::rename, "manifest", EIO, 0, errc::io_failed, true},
      // fsync_dir calls of one append: store/segments, then store (skip the first): after the manifest rename.
      {Op::fsync_dir, "store", EIO, 1, errc::io_failed, false},
  };
  int case_no = 0;
  for (const FaultCase& c : cases) {
    SCOPED_TRACE("case " + std::to_string(case_no++));
    const fs::path dir = store_dir("inject");
    auto io = std::make_shared<FaultIo>();
    WriteOptions o;
    o.io = io;
    auto w = StoreWriter::create(dir, tiny_meta(), o);
    ASSERT_TRUE(w);
    ASSERT_TRUE(append_next(*w, 64));
    ASSERT_TRUE(append_next(*w, 64));

    io->arm(c.op, c.path, c.err, c.skip);
    auto st = append_next(*w, 64);
    ASSERT_EQ(io->fired(), 1);
    ASSERT_FALSE(st);
    EXPECT_EQ(st.error().code, c.want) << st.error().what();
    if (c.want == errc::disk_full) {
      EXPECT_NE(st.error().message.find("disk full"), std::string::npos);
    }
    EXPECT_NE(st.error().message.find(strerror(c.err)), std::string::npos) << st.error().message;
    EXPECT_TRUE(tmp_files(dir).empty());
    if (c.writer_survives) {
      EXPECT_FALSE(fs::exists(dir / "segments" / "seg-000002.ilk")) << "the failed segment's space was not freed";
      EXPECT_EQ(w->n_tokens(), 128);
      expect_store_content(dir);
      EXPECT_EQ(StoreReader::open(dir)->n_tokens(), 128);
      // The writer goes on once the fault is gone.
      ASSERT_TRUE(append_next(*w, 64));
      expect_store_content(dir, 192);
    } else {
      auto again = append_next(*w, 64);
      ASSERT_FALSE(again);
      EXPECT_NE(again.error().message.find("reopen the store"), std::string::npos);
      w = tl::unexpected(Error{});  // release the lock
      expect_store_content(dir, 128);
      auto w2 = StoreWriter::open_append(dir, "sha256:tiny-model-0001", 1, o);
      ASSERT_TRUE(w2) << w2.error().what();
      ASSERT_TRUE(append_next(*w2, 64));
      expect_store_content(dir, 192);
    }
  }
}

TEST(StoreFaults, InjectedFailureInStateAndNotesKeepsTheOldOnes) {
  const fs::path dir = store_dir("inject-state");
  auto io = std::make_shared<FaultIo>();
  WriteOptions o;
  o.io = io;
  auto w = StoreWriter::create(dir, tiny_meta(), o);
  ASSERT_TRUE(w);
  ASSERT_TRUE(append_next(*w, 16));
  const std::vector<uint8_t> a(300, 1), b(5000, 2);
  ASSERT_TRUE(w->write_state(a));

  io->arm(Op::write, "state-", ENOSPC);
  EXPECT_EQ(w->write_state(b).error().code, errc::disk_full);
  EXPECT_EQ(*StoreReader::open(dir)->state(), a);
  io->arm(Op::write, "manifest", ENOSPC);
  EXPECT_EQ(w->write_state(b).error().code, errc::disk_full);
  EXPECT_EQ(*StoreReader::open(dir)->state(), a);
  EXPECT_FALSE(fs::exists(dir / "state-000002.bin"));
  EXPECT_TRUE(tmp_files(dir).empty());
  ASSERT_TRUE(w->write_state(b));
  EXPECT_EQ(*StoreReader::open(dir)->state(), b);

  io->arm(Op::fsync, "manifest", ENOSPC);
  EXPECT_EQ(w->set_notes({{"k", 1}}).error().code, errc::disk_full);
  EXPECT_TRUE(StoreReader::open(dir)->meta().notes.empty());
  ASSERT_TRUE(w->set_notes({{"k", 2}}));
  EXPECT_EQ(StoreReader::open(dir)->meta().notes["k"], 2);
}

TEST(StoreFaults, CreateOnAFullDiskLeavesNothingBehind) {
  const fs::path dir = store_dir("inject-create");
  auto io = std::make_shared<FaultIo>();
  WriteOptions o;
  o.io = io;
  io->arm(Op::write, "manifest", ENOSPC);
  auto w = StoreWriter::create(dir, tiny_meta(), o);
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code, errc::disk_full);
  EXPECT_FALSE(fs::exists(dir));
  EXPECT_TRUE(StoreWriter::create(dir, tiny_meta(), o));  // a retry works
}

// A 1 MiB tmpfs really fills up. Needs root (CAP_SYS_ADMIN); skipped otherwise.
TEST(StoreFaults, RealDiskFullOnSmallTmpfs) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount a tmpfs";
  const fs::path mnt = ilre::test::scratch_dir("storage-tmpfs");
  if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=1m") != 0) {
    GTEST_SKIP() << "mount tmpfs failed: " << std::strerror(errno);
  }
  struct Unmount {
    std::string path;
    ~Unmount() { ::umount2(path.c_str(), MNT_DETACH); }
  } guard{mnt.string()};

  const fs::path dir = mnt / "store";
  StoreMeta meta = tiny_meta(KeyDtype::f16, 1, 256);
  auto w = StoreWriter::create(dir, meta);
  ASSERT_TRUE(w) << w.error().what();
  std::mt19937 rng(11);
  std::normal_distribution<float> noise(0.0f, 1.0f);
  const int64_t n = 64;  // 32 KiB of raw keys per segment, ~28 KiB stored: noise does not compress much
  int ok = 0;
  Error last;
  for (int i = 0; i < 200; ++i) {
    std::vector<float> k(static_cast<size_t>(n) * 256);
    for (auto& x : k) x = noise(rng);
    std::vector<int32_t> t(static_cast<size_t>(n), i);
    auto st = w->append(k, t, w->n_tokens());
    if (!st) {
      last = st.error();
      break;
    }
    ++ok;
  }
  ASSERT_EQ(last.code, errc::disk_full) << last.what();
  EXPECT_NE(last.message.find("No space left on device"), std::string::npos) << last.message;
  EXPECT_GT(ok, 5);
  EXPECT_TRUE(tmp_files(dir).empty());
  {
    auto r = StoreReader::open(dir);
    ASSERT_TRUE(r) << r.error().what();
    EXPECT_EQ(r->n_tokens(), ok * n);
    EXPECT_TRUE(r->verify());
  }
  // A state blob that cannot fit fails cleanly too.
  EXPECT_EQ(w->write_state(std::vector<uint8_t>(2 << 20, 3)).error().code, errc::disk_full);
  EXPECT_TRUE(tmp_files(dir).empty());
  EXPECT_FALSE(StoreReader::open(dir)->has_state());
  // Reopening a full store works (it needs no space), and appending still reports disk_full.
  w = tl::unexpected(Error{});
  auto w2 = StoreWriter::open_append(dir, meta.model_fingerprint, meta.retrieval_layer);
  ASSERT_TRUE(w2) << w2.error().what();
  std::vector<float> k(static_cast<size_t>(n) * 256);
  for (auto& x : k) x = noise(rng);
  EXPECT_EQ(w2->append(k, std::vector<int32_t>(static_cast<size_t>(n), 0), w2->n_tokens()).error().code,
            errc::disk_full);
  auto r = StoreReader::open(dir);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->n_tokens(), ok * n);
  EXPECT_TRUE(r->verify());
}

// kill -9 of a process in the middle of appending (with fsync on) never breaks the store.
TEST(StoreFaults, KillDuringAppendLeavesAReopenableStore) {
  const fs::path dir = store_dir("kill");
  ASSERT_TRUE(StoreWriter::create(dir, tiny_meta()));
  int64_t before = 0;
  int rounds_with_leftovers = 0;  // kills that landed mid-write (a tmp file or unlisted segment remained)
  const int rounds = 8;
  for (int round = 0; round < rounds; ++round) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a test process that stopped on a failure
      auto w = StoreWriter::open_append(dir, "sha256:tiny-model-0001", 1);
      if (!w) ::_exit(2);
      for (;;) {
        if (!append_next(*w, 32 + (w->n_tokens() / 32) % 5)) ::_exit(3);
      }
    }
    struct Reaper {  // kills and reaps the child if an assertion below returns early
      pid_t pid;
      ~Reaper() {
        if (pid > 0) {
          ::kill(pid, SIGKILL);
          ::waitpid(pid, nullptr, 0);
        }
      }
    } reaper{pid};
    // Let the child write a few segments, then kill it at an arbitrary point.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    for (;;) {
      auto r = StoreReader::open(dir);  // always consistent, even while the child writes
      ASSERT_TRUE(r) << r.error().what();
      if (r->n_tokens() >= before + 3 * 32) break;
      int status = 0;
      ASSERT_EQ(::waitpid(pid, &status, WNOHANG), 0) << "writer child exited early with status " << status;
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "writer child made no progress";
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    std::this_thread::sleep_for(std::chrono::microseconds(300 + 900 * round));
    ::kill(pid, SIGKILL);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    reaper.pid = -1;
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "status " << status;
    expect_store_content(dir, before + 3 * 32);
    before = StoreReader::open(dir)->n_tokens();
    const auto n_seg_files = std::distance(fs::directory_iterator(dir / "segments"), fs::directory_iterator{});
    if (!tmp_files(dir).empty() ||
        static_cast<size_t>(n_seg_files) != StoreReader::open(dir)->segments().size()) {
      ++rounds_with_leftovers;
    }
  }
  std::printf("[ kill -9 ] %d of %d kills left a partial write behind; every store reopened intact\n",
              rounds_with_leftovers, rounds);
  // The next writer cleans whatever the killed ones left and continues where the store ends.
  auto w = StoreWriter::open_append(dir, "sha256:tiny-model-0001", 1);
  ASSERT_TRUE(w) << w.error().what();
  EXPECT_TRUE(tmp_files(dir).empty());
  EXPECT_EQ(w->n_tokens(), before);
  ASSERT_TRUE(append_next(*w, 10));
  expect_store_content(dir, before + 10);
}

}  // namespace
}  // namespace ilre::storage::test
