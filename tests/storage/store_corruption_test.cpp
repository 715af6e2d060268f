// Damaged stores: flipped bytes, truncation, missing files, stray tmp files, newer formats.
#include <gtest/gtest.h>

#include "storage/manifest.h"
#include "store_test_util.h"

namespace ilre::storage::test {
namespace {

// A store with 3 segments of 64 tokens and a state blob.
fs::path make_store(const std::string& tag) {
  const fs::path dir = store_dir(tag);
  WriteOptions o;
  o.fsync = false;
  auto w = StoreWriter::create(dir, tiny_meta(), o);
  EXPECT_TRUE(w);
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(w->append(make_keys(i * 64, 64, 32), make_tokens(i * 64, 64), i * 64));
  }
  EXPECT_TRUE(w->write_state(std::vector<uint8_t>(100, 7)));
  return dir;
}

TEST(StoreCorruption, FlippedByteInSegmentIsNamed) {
  const fs::path dir = make_store("flip-seg");
  auto r = StoreReader::open(dir);  // open does not read segments, so it succeeds
  ASSERT_TRUE(r);
  const SegmentInfo& s = r->segments()[1];
  for (uint64_t off : {uint64_t{3}, uint64_t{70}, s.stored_bytes / 2, s.stored_bytes - 1}) {
    const fs::path p = dir / s.file;
    const std::string original = read_text(p);
    flip_byte(p, off);
    auto seg = r->read_segment(1, KeyFormat::f32);
    ASSERT_FALSE(seg) << off;
    EXPECT_EQ(seg.error().code, errc::checksum_mismatch) << off;
    EXPECT_NE(seg.error().message.find("seg-000001.ilk"), std::string::npos) << seg.error().message;
    EXPECT_EQ(r->verify().error().code, errc::checksum_mismatch);
    write_text(p, original);
  }
  EXPECT_TRUE(r->read_segment(1, KeyFormat::f32));
  EXPECT_TRUE(r->read_segment(0, KeyFormat::f32));
}

TEST(StoreCorruption, FlippedByteInManifest) {
  const fs::path dir = make_store("flip-manifest");
  const fs::path mp = dir / "manifest.json";
  const std::string text = read_text(mp);
  // A value edit that keeps the JSON valid: change the model name.
  std::string edited = text;
  const size_t at = edited.find("tiny-test-model");
  ASSERT_NE(at, std::string::npos);
  edited[at] = 'T';
  write_text(mp, edited);
  auto r = StoreReader::open(dir);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::checksum_mismatch);
  EXPECT_NE(r.error().message.find("manifest.json"), std::string::npos);
  // A segment checksum edited in the manifest is caught too.
  edited = text;
  const size_t cs = edited.find("\"checksum\": \"crc32c:", edited.find("\"segments\""));
  ASSERT_NE(cs, std::string::npos);
  edited[cs + 20] = edited[cs + 20] == '0' ? '1' : '0';
  write_text(mp, edited);
  EXPECT_EQ(StoreReader::open(dir).error().code, errc::checksum_mismatch);
  // Whitespace is not content.
  std::string spaced = text;
  spaced.insert(1, "\n\n   ");
  write_text(mp, spaced);
  EXPECT_TRUE(StoreReader::open(dir));
  // Half-written (truncated) and empty manifests.
  write_text(mp, text.substr(0, text.size() / 2));
  EXPECT_EQ(StoreReader::open(dir).error().code, errc::checksum_mismatch);
  write_text(mp, "");
  EXPECT_EQ(StoreReader::open(dir).error().code, errc::checksum_mismatch);
  // Writers refuse it as well.
  EXPECT_EQ(StoreWriter::open_append(dir, "sha256:tiny-model-0001", 1).error().code, errc::checksum_mismatch);
  write_text(mp, text);
  EXPECT_TRUE(StoreReader::open(dir));
}

TEST(StoreCorruption, TruncatedSegment) {
  const fs::path dir = make_store("truncated");
  auto r = StoreReader::open(dir);
  ASSERT_TRUE(r);
  const fs::path p = dir / r->segments()[2].file;
  fs::resize_file(p, r->segments()[2].stored_bytes - 10);
  // An open reader finds it when reading; a new open finds it by size.
  auto seg = r->read_segment(2, KeyFormat::f32);
  ASSERT_FALSE(seg);
  EXPECT_EQ(seg.error().code, errc::checksum_mismatch);
  EXPECT_NE(seg.error().message.find("seg-000002.ilk"), std::string::npos);
  auto r2 = StoreReader::open(dir);
  ASSERT_FALSE(r2);
  EXPECT_EQ(r2.error().code, errc::checksum_mismatch);
  EXPECT_NE(r2.error().message.find("seg-000002.ilk"), std::string::npos) << r2.error().message;
  EXPECT_EQ(StoreWriter::open_append(dir, "sha256:tiny-model-0001", 1).error().code, errc::checksum_mismatch);
}

TEST(StoreCorruption, MissingSegment) {
  const fs::path dir = make_store("missing");
  auto r = StoreReader::open(dir);
  ASSERT_TRUE(r);
  fs::remove(dir / r->segments()[0].file);
  auto seg = r->read_segment(0, KeyFormat::f32);
  ASSERT_FALSE(seg);
  EXPECT_EQ(seg.error().code, errc::io_failed);
  EXPECT_NE(seg.error().message.find("seg-000000.ilk"), std::string::npos);
  EXPECT_EQ(r->tokens_at(std::vector<int64_t>{1}).error().code, errc::io_failed);
  auto r2 = StoreReader::open(dir);
  ASSERT_FALSE(r2);
  EXPECT_EQ(r2.error().code, errc::io_failed);
  EXPECT_NE(r2.error().message.find("seg-000000.ilk"), std::string::npos) << r2.error().message;
}

TEST(StoreCorruption, SegmentSwappedForAnotherOfTheSameSize) {
  // Two segments with the same keys and tokens differ only in their header's first position, so they have
  // the same size: a copy of one over the other passes open() and is caught by the checksum.
  const fs::path dir = store_dir("swapped");
  WriteOptions o;
  o.fsync = false;
  auto w = StoreWriter::create(dir, tiny_meta(), o);
  ASSERT_TRUE(w);
  ASSERT_TRUE(w->append(make_keys(0, 64, 32), make_tokens(0, 64), 0));
  ASSERT_TRUE(w->append(make_keys(0, 64, 32), make_tokens(0, 64), 64));
  auto r = StoreReader::open(dir);
  ASSERT_TRUE(r);
  const std::string s0 = read_text(dir / r->segments()[0].file);
  ASSERT_EQ(s0.size(), read_text(dir / r->segments()[1].file).size());
  write_text(dir / r->segments()[1].file, s0);
  ASSERT_TRUE(StoreReader::open(dir));
  auto seg = r->read_segment(1, KeyFormat::f32);
  ASSERT_FALSE(seg);
  EXPECT_EQ(seg.error().code, errc::checksum_mismatch);
  EXPECT_EQ(r->tokens_at(std::vector<int64_t>{64}).error().code, errc::checksum_mismatch);
}

TEST(StoreCorruption, StrayTmpFilesAreIgnoredThenCleaned) {
  const fs::path dir = make_store("stray");
  write_text(dir / "manifest.json.tmp", "{ half a manif");
  write_text(dir / "segments" / "seg-000003.ilk.tmp", "partial segment");
  write_text(dir / "segments" / "seg-000003.ilk", "an orphan segment the manifest never listed");
  write_text(dir / "state-000009.bin", "orphan state");
  write_text(dir / "user-file.txt", "not ours");
  auto r = StoreReader::open(dir);
  ASSERT_TRUE(r) << r.error().what();
  EXPECT_EQ(r->n_tokens(), 192);
  EXPECT_TRUE(r->verify());
  // Readers never delete; the next writer cleans up what is clearly ours and leaves the rest.
  EXPECT_TRUE(fs::exists(dir / "manifest.json.tmp"));
  {
    auto w = StoreWriter::open_append(dir, "sha256:tiny-model-0001", 1);
    ASSERT_TRUE(w) << w.error().what();
    EXPECT_TRUE(tmp_files(dir).empty());
    EXPECT_FALSE(fs::exists(dir / "segments" / "seg-000003.ilk"));
    EXPECT_FALSE(fs::exists(dir / "state-000009.bin"));
    EXPECT_TRUE(fs::exists(dir / "state-000001.bin"));
    EXPECT_TRUE(fs::exists(dir / "user-file.txt"));
    ASSERT_TRUE(w->append(make_keys(192, 8, 32), make_tokens(192, 8), 192));
  }
  EXPECT_TRUE(StoreReader::open(dir)->verify());
}

TEST(StoreCorruption, NewerFormatIsUnsupported) {
  const fs::path dir = make_store("newer");
  const fs::path mp = dir / "manifest.json";
  auto j = nlohmann::json::parse(read_text(mp));
  j["format_version"] = kManifestFormatVersion + 1;
  j["checksum"] = "crc32c:00000000";  // a future writer may checksum differently: the version decides first
  write_text(mp, j.dump(1));
  auto r = StoreReader::open(dir);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::unsupported);
  EXPECT_NE(r.error().message.find("format version 2"), std::string::npos) << r.error().message;
}

TEST(StoreCorruption, ManifestCannotPointOutsideTheStore) {
  const fs::path dir = make_store("escape");
  Manifest m = *load_manifest(dir);
  m.segments[0].file = "../../etc/passwd";
  write_text(dir / "manifest.json", manifest_to_text(m));  // a correct checksum over hostile content
  auto r = StoreReader::open(dir);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::bad_json);
}

}  // namespace
}  // namespace ilre::storage::test
