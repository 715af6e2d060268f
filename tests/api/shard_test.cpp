// Sharded ingest (api/sharded_ingest.cpp): K pipelines over ranges of one document, or K separate runs of
// `shard i/K` merged afterwards, must give the store a sequential ingest gives — segment files and state
// byte for byte — and every way of getting the shards wrong must be refused with the store left absent.
// stories260K at l_R 2, chunk 64, window 128, sink 8, 256-token segments: the receptive field is 256 tokens,
// so later shards really jump over most of the document before their range.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "ilre/engine.h"
#include "stories_fixture.h"

namespace fs = std::filesystem;

namespace ilre {
namespace {

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

nlohmann::json manifest(const fs::path& store) { return nlohmann::json::parse(read_bytes(store / "manifest.json")); }

// Every segment file and the state file equal; the manifests list the same segments with the same checksums.
void expect_same_store(const fs::path& a, const fs::path& b) {
  const nlohmann::json ma = manifest(a), mb = manifest(b);
  ASSERT_EQ(ma.at("n_tokens"), mb.at("n_tokens"));
  ASSERT_EQ(ma.at("segments").size(), mb.at("segments").size());
  for (size_t i = 0; i < ma.at("segments").size(); ++i) {
    const auto& sa = ma["segments"][i];
    const auto& sb = mb["segments"][i];
    EXPECT_EQ(sa.at("first_pos"), sb.at("first_pos")) << "segment " << i;
    EXPECT_EQ(sa.at("checksum"), sb.at("checksum")) << "segment " << i;
    EXPECT_TRUE(read_bytes(a / sa.at("file").get<std::string>()) == read_bytes(b / sb.at("file").get<std::string>()))
        << "segment " << i << " differs";
  }
  ASSERT_FALSE(ma.at("state").is_null());
  ASSERT_FALSE(mb.at("state").is_null());
  EXPECT_TRUE(read_bytes(a / ma["state"].at("file").get<std::string>()) == read_bytes(b / mb["state"].at("file").get<std::string>()))
      << "the streaming state at the end differs";
  EXPECT_FALSE(mb.contains("first_pos"));
}

class ShardedIngest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = test::scratch_dir("shards");
    doc_ = root_ + "/doc.txt";
    std::ofstream(doc_) << test::sentences_of({"Lily went to the park with her mom. ", "The sun was warm and the sky was blue. ",
                                               "Tom had a red ball and a small dog. ", "They played until it was time to eat. ",
                                               "The cat sat on the mat and looked at the bird. ", "Ben found a key under a rock. "},
                                              420);
    auto e = Engine::open(test::stories_config());
    ASSERT_TRUE(e) << e.error().what();
    engine_ = *e;
    auto seq = engine_->ingest_file(doc_, sequential(), {});
    ASSERT_TRUE(seq) << seq.error().what();
    ASSERT_GT(seq->segments_added, 10);  // enough segments for shards that jump
    tokens_ = seq->total_tokens;
  }
  std::string sequential() const { return root_ + "/sequential"; }

  // Shards 0..count-1 ingested by separate runs (as on separate machines) into <root>/<prefix>-<i>.
  std::vector<std::string> ingest_shards(int count, const std::string& prefix) {
    std::vector<std::string> dirs;
    for (int i = 0; i < count; ++i) {
      dirs.push_back(root_ + "/" + prefix + "-" + std::to_string(i));
      IngestOptions o;
      o.shard_index = i;
      o.shard_count = count;
      auto rep = engine_->ingest_file(doc_, dirs.back(), o);
      EXPECT_TRUE(rep) << rep.error().what();
      if (rep) {
        EXPECT_LT(rep->tokens_added, tokens_);
      }
    }
    return dirs;
  }

  std::string root_, doc_;
  std::shared_ptr<Engine> engine_;
  int64_t tokens_ = 0;
};

TEST_F(ShardedIngest, ShardsInOneRunGiveTheSequentialStoreBitForBit) {
  for (int shards : {2, 3, 5}) {
    SCOPED_TRACE(shards);
    const std::string dir = root_ + "/sharded-" + std::to_string(shards);
    IngestOptions o;
    o.shards = shards;
    int64_t last_tokens = -1;
    o.on_progress = [&](const Progress& p) { last_tokens = p.tokens; };
    auto rep = engine_->ingest_file(doc_, dir, o);
    ASSERT_TRUE(rep) << rep.error().what();
    EXPECT_EQ(rep->tokens_added, tokens_);
    EXPECT_EQ(rep->total_tokens, tokens_);
    EXPECT_GT(rep->timings_ms.at("merge"), 0.0);
    EXPECT_LE(last_tokens, tokens_);
    expect_same_store(sequential(), dir);
    EXPECT_EQ(manifest(dir)["notes"].at("merged_shards"), shards);
    EXPECT_TRUE(manifest(dir)["notes"].at("complete").get<bool>());
    for (int k = 0; k < shards; ++k) EXPECT_FALSE(fs::exists(dir + ".shard-" + std::to_string(k)));
  }
}

TEST_F(ShardedIngest, SeparateShardRunsMergeToTheSequentialStore) {
  const std::vector<std::string> shards = ingest_shards(4, "part");
  for (int i = 0; i < 4; ++i) {
    const nlohmann::json m = manifest(shards[static_cast<size_t>(i)]);
    EXPECT_EQ(m["notes"]["shard"].at("index"), i);
    EXPECT_EQ(m.value("first_pos", int64_t{0}) % 256, 0) << "shards start on segment boundaries";
  }
  // A shard is part of a document: asking it or appending to it is refused, naming the way out.
  auto asked = engine_->ask(shards[1], "Who went to the park?", {});
  ASSERT_FALSE(asked);
  EXPECT_NE(asked.error().message.find("merge the shards"), std::string::npos) << asked.error().message;
  IngestOptions append;
  append.append = true;
  EXPECT_FALSE(engine_->ingest_text("More text.", shards[1], append));

  const std::string merged = root_ + "/merged";
  auto rep = engine_->merge_shards(shards, merged);
  ASSERT_TRUE(rep) << rep.error().what();
  EXPECT_EQ(rep->total_tokens, tokens_);
  expect_same_store(sequential(), merged);

  // The merged store answers exactly as the sequential one (greedy decoding).
  auto a = engine_->ask(sequential(), "What did Tom have?", {});
  auto b = engine_->ask(merged, "What did Tom have?", {});
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->text, b->text);
  EXPECT_EQ(a->spans, b->spans);
}

TEST_F(ShardedIngest, WrongShardListsAreRefusedAndLeaveNoStore) {
  constexpr int kCount = 3;
  const std::vector<std::string> shards = ingest_shards(kCount, "p");
  auto refused = [&](const std::vector<std::string>& list, const std::string& why) {
    const std::string out = root_ + "/bad";
    auto r = engine_->merge_shards(list, out);
    EXPECT_FALSE(r) << why;
    EXPECT_FALSE(fs::exists(out)) << why << ": a refused merge leaves nothing";
    return r ? std::string() : r.error().message;
  };
  EXPECT_NE(refused({shards[0], shards[2]}, "a gap").find("starts at position"), std::string::npos);
  EXPECT_NE(refused({shards[1], shards[0], shards[2]}, "out of order").find("not 0"), std::string::npos);
  EXPECT_NE(refused({shards[0], shards[1]}, "the last one missing").find("of a document of"), std::string::npos);
  refused({shards[0], shards[0]}, "repeated");
  refused({sequential(), shards[1]}, "a whole store is not a shard");

  // Other key-shaping settings: the keys would not continue each other.
  Config other = test::stories_config();
  other.prefill.window = 64;
  auto e2 = Engine::open(other);
  ASSERT_TRUE(e2);
  IngestOptions o;
  o.shard_index = 1;
  o.shard_count = kCount;
  ASSERT_TRUE((*e2)->ingest_file(doc_, root_ + "/w64-1", o));
  EXPECT_NE(refused({shards[0], root_ + "/w64-1", shards[2]}, "another window").find("other settings"), std::string::npos);

  // A segment damaged on its way from another machine.
  const nlohmann::json m = manifest(shards[1]);
  const fs::path seg = fs::path(shards[1]) / m["segments"][0].at("file").get<std::string>();
  std::string bytes = read_bytes(seg);
  bytes[bytes.size() / 2] ^= 0x10;
  std::ofstream(seg, std::ios::binary | std::ios::trunc) << bytes;
  EXPECT_NE(refused(shards, "a flipped bit").find("checksum mismatch"), std::string::npos);
}

TEST_F(ShardedIngest, ImpossibleShardingsAreClearErrors) {
  IngestOptions o;
  o.shard_index = 40;
  o.shard_count = 41;
  auto r = engine_->ingest_file(doc_, root_ + "/too-many", o);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("would be empty"), std::string::npos) << r.error().message;
  EXPECT_FALSE(fs::exists(root_ + "/too-many"));

  IngestOptions bad_index;
  bad_index.shard_index = 3;
  bad_index.shard_count = 3;
  EXPECT_FALSE(engine_->ingest_file(doc_, root_ + "/x", bad_index));
  IngestOptions appending;
  appending.shards = 2;
  appending.append = true;
  EXPECT_FALSE(engine_->ingest_file(doc_, sequential(), appending));
  IngestOptions into_existing;
  into_existing.shards = 2;
  auto existing = engine_->ingest_file(doc_, sequential(), into_existing);
  ASSERT_FALSE(existing);
  EXPECT_NE(existing.error().message.find("not empty"), std::string::npos);

  // More shards than segments: as many shards as there are segments.
  IngestOptions many;
  many.shards = 64;
  auto rep = engine_->ingest_file(doc_, root_ + "/many", many);
  ASSERT_TRUE(rep) << rep.error().what();
  expect_same_store(sequential(), root_ + "/many");
}

}  // namespace
}  // namespace ilre
