// All-or-nothing appends (StoreWriter transactions): what a daemon's broken upload or a kill -9 in the
// middle of an append must leave behind is the store as it was.
#include <gtest/gtest.h>

#include <fstream>

#include "store_test_util.h"

namespace ilre::storage::test {
namespace {

WriteOptions fast() {
  WriteOptions o;
  o.fsync = false;
  return o;
}

void append(StoreWriter& w, int64_t n) {
  const int64_t first = w.n_tokens();
  auto st = w.append(make_keys(first, n, w.meta().key_width(), w.meta().dtype), make_tokens(first, n), first);
  ASSERT_TRUE(st) << st.error().what();
}

std::vector<uint8_t> blob(size_t n, uint8_t seed) {
  std::vector<uint8_t> b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(seed + i);
  return b;
}

size_t files_in(const fs::path& dir) {
  size_t n = 0;
  for (auto it = fs::recursive_directory_iterator(dir); it != fs::recursive_directory_iterator(); ++it) n += it->is_regular_file();
  return n;
}

TEST(StoreTransaction, ReadersSeeNothingUntilCommit) {
  const fs::path dir = store_dir("txn-commit");
  auto w = StoreWriter::create(dir, tiny_meta(), fast());
  ASSERT_TRUE(w);
  append(*w, 16);
  ASSERT_TRUE(w->write_state(blob(10, 1)));
  w->begin_transaction();
  append(*w, 16);
  ASSERT_TRUE(w->write_state(blob(20, 2)));
  append(*w, 8);
  ASSERT_TRUE(w->write_state(blob(30, 3)));
  EXPECT_EQ(w->n_tokens(), 40);
  {
    auto r = StoreReader::open(dir);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->n_tokens(), 16);
    EXPECT_EQ(*r->state(), blob(10, 1));  // the committed state file is still there and named
  }
  ASSERT_TRUE(w->commit());
  auto r = StoreReader::open(dir);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->n_tokens(), 40);
  EXPECT_EQ(r->segments().size(), 3u);
  EXPECT_EQ(*r->state(), blob(30, 3));
  // Only the current state file is left: the committed one and the intermediate one are gone.
  size_t states = 0;
  for (const auto& e : fs::directory_iterator(dir)) states += e.path().filename().string().rfind("state-", 0) == 0;
  EXPECT_EQ(states, 1u);
}

TEST(StoreTransaction, RollbackAndDestructionLeaveTheStoreAsItWas) {
  const fs::path dir = store_dir("txn-rollback");
  auto w = StoreWriter::create(dir, tiny_meta(), fast());
  ASSERT_TRUE(w);
  append(*w, 16);
  ASSERT_TRUE(w->write_state(blob(10, 1)));
  const size_t files_before = files_in(dir);
  w->begin_transaction();
  append(*w, 16);
  ASSERT_TRUE(w->write_state(blob(20, 2)));
  w->rollback();
  EXPECT_EQ(w->n_tokens(), 16);
  EXPECT_EQ(files_in(dir), files_before);
  // The writer goes on after a rollback, and segment names are reused without confusion.
  append(*w, 4);
  EXPECT_EQ(StoreReader::open(dir)->n_tokens(), 20);
  // A writer destroyed inside a transaction (the ingest failed, an exception) rolls back too.
  {
    auto w2 = std::move(*w);
    w2.begin_transaction();
    append(w2, 32);
    ASSERT_TRUE(w2.write_state(blob(40, 4)));
  }
  auto r = StoreReader::open(dir);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->n_tokens(), 20);
  EXPECT_EQ(*r->state(), blob(10, 1));
  for (size_t i = 0; i < r->segments().size(); ++i) EXPECT_TRUE(r->read_segment(i, KeyFormat::f32)) << i;
}

TEST(StoreTransaction, AKilledTransactionIsCleanedByTheNextWriter) {
  const fs::path dir = store_dir("txn-killed");
  {
    auto w = StoreWriter::create(dir, tiny_meta(), fast());
    ASSERT_TRUE(w);
    append(*w, 16);
    ASSERT_TRUE(w->write_state(blob(10, 1)));
  }
  const size_t files_before = files_in(dir);
  // What a kill -9 mid-transaction leaves: segment and state files the manifest does not name.
  fs::copy_file(dir / "segments" / "seg-000000.ilk", dir / "segments" / "seg-000001.ilk");
  {
    std::ofstream(dir / "state-000009.bin") << "half written";
  }
  auto w = StoreWriter::open_append(dir, tiny_meta().model_fingerprint, tiny_meta().retrieval_layer, fast());
  ASSERT_TRUE(w) << w.error().what();
  EXPECT_EQ(w->n_tokens(), 16);
  EXPECT_EQ(files_in(dir), files_before);
}

}  // namespace
}  // namespace ilre::storage::test
