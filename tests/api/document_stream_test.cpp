// Document streams through the library API on stories260K: parts appended one by one are one document
// (the same tokens and bit-identical keys as the whole text at once, wherever the parts split), asks on
// another thread see a consistent snapshot, and close/reopen/append keep working.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <random>
#include <sstream>
#include <thread>

#include "ilre/engine.h"
#include "storage/store_reader.h"
#include "stories_fixture.h"
#include "support/paths.h"

namespace ilre {
namespace {

// Words, punctuation, a multi-byte character and text that looks like a special token, so cuts land
// inside words, inside UTF-8 sequences and inside "</s>".
std::string document(int sentences) {
  return test::sentences_of({"Lily went to the park with her mom. ", "The sun was warm — the sky was blue. ",
                             "Tom had a red ball </s> and a small dog. ", "They played until it was time to eat.\n",
                             "Ünïcödé café, naïve résumé: 👍 ok. "},
                            sentences);
}

Config stream_config() {
  Config c = test::stories_config();
  c.decode.max_tokens = 8;
  return c;
}

struct StoreContents {
  std::vector<int32_t> tokens;
  std::vector<uint16_t> keys;  // F16 bit patterns, as stored
};

StoreContents read_all(const std::string& dir) {
  StoreContents out;
  auto r = storage::StoreReader::open(dir);
  EXPECT_TRUE(r) << (r ? "" : r.error().what());
  if (!r) return out;
  for (size_t i = 0; i < r->segments().size(); ++i) {
    auto seg = r->read_segment(i, storage::KeyFormat::f16);
    EXPECT_TRUE(seg);
    if (!seg) return out;
    out.tokens.insert(out.tokens.end(), seg->tokens.begin(), seg->tokens.end());
    out.keys.insert(out.keys.end(), seg->keys_16.begin(), seg->keys_16.end());
  }
  return out;
}

class DocumentStreamTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto e = Engine::open(stream_config());
    ASSERT_TRUE(e) << e.error().what();
    engine_ = *e;
  }
  static void TearDownTestSuite() { engine_.reset(); }
  static std::shared_ptr<Engine> engine_;
};
std::shared_ptr<Engine> DocumentStreamTest::engine_;

TEST_F(DocumentStreamTest, PartsSplitAnywhereEqualTheWholeText) {
  const std::string text = document(60);
  const std::string whole_dir = test::scratch_dir("stream-whole") + "/s";
  ASSERT_TRUE(engine_->ingest_text(text, whole_dir, {}));
  const StoreContents whole = read_all(whole_dir);
  ASSERT_GT(whole.tokens.size(), 500u);

  std::mt19937 rng(7);
  for (int trial = 0; trial < 4; ++trial) {
    SCOPED_TRACE("trial " + std::to_string(trial));
    const std::string dir = test::scratch_dir("stream-parts") + "/s";
    auto stream = engine_->open_stream(dir);
    ASSERT_TRUE(stream) << stream.error().what();
    size_t at = 0;
    int parts = 0;
    while (at < text.size()) {
      // Small and large parts: one byte (splits a UTF-8 sequence), a few bytes (splits "</s>"), whole chunks.
      const size_t n = std::min(text.size() - at, static_cast<size_t>(std::uniform_int_distribution<int>(1, 700)(rng)));
      auto rep = (*stream)->append(std::string_view(text).substr(at, n));
      ASSERT_TRUE(rep) << rep.error().what();
      at += n;
      ++parts;
    }
    auto open_store = engine_->open_store(dir);
    ASSERT_TRUE(open_store);
    EXPECT_TRUE(open_store->open);
    ASSERT_TRUE((*stream)->close());
    EXPECT_TRUE((*stream)->closed());
    const StoreContents got = read_all(dir);
    EXPECT_GT(parts, 5);
    EXPECT_EQ(got.tokens, whole.tokens);
    EXPECT_TRUE(got.keys == whole.keys) << "keys differ from the whole-text ingest";
    auto closed = engine_->open_store(dir);
    ASSERT_TRUE(closed);
    EXPECT_FALSE(closed->open);
    EXPECT_EQ(closed->pending_tokens, 0);
  }
}

TEST_F(DocumentStreamTest, ReopenedStreamContinuesExactly) {
  const std::string text = document(30);
  const std::string whole_dir = test::scratch_dir("stream-whole2") + "/s";
  ASSERT_TRUE(engine_->ingest_text(text, whole_dir, {}));
  const std::string dir = test::scratch_dir("stream-reopen") + "/s";
  const size_t cut = text.find("Ü") + 1;  // inside a two-byte character
  {
    auto s = engine_->open_stream(dir);
    ASSERT_TRUE(s);
    ASSERT_TRUE((*s)->append(std::string_view(text).substr(0, cut)));
  }  // destroyed open: the tail stays in the store
  auto info = engine_->open_store(dir);
  ASSERT_TRUE(info);
  EXPECT_TRUE(info->open);
  {
    auto s = engine_->open_stream(dir);
    ASSERT_TRUE(s);
    std::istringstream rest(text.substr(cut));
    ASSERT_TRUE((*s)->append(rest));
    ASSERT_TRUE((*s)->close());
  }
  EXPECT_EQ(read_all(dir).tokens, read_all(whole_dir).tokens);
  EXPECT_TRUE(read_all(dir).keys == read_all(whole_dir).keys);
}

TEST_F(DocumentStreamTest, AsksDuringAppendsSeeConsistentSnapshots) {
  const std::string dir = test::scratch_dir("stream-snapshot") + "/s";
  auto stream = engine_->open_stream(dir);
  ASSERT_TRUE(stream);
  ASSERT_TRUE((*stream)->append(document(20)));
  std::atomic<bool> done{false};
  std::atomic<int> asks{0};
  std::atomic<int> failures{0};
  std::thread asker([&] {
    while (!done.load()) {
      auto a = engine_->ask(dir, "Who went to the park?", {});
      if (!a) {
        ADD_FAILURE() << a.error().what();
        ++failures;
        return;
      }
      // A snapshot: the context is whole chunks of the stream, never a torn segment.
      EXPECT_EQ(a->context_tokens % 64, 0);
      ++asks;
    }
  });
  int64_t last = 0;
  for (int i = 0; i < 12; ++i) {
    auto rep = (*stream)->append(document(10 + i));
    ASSERT_TRUE(rep) << rep.error().what();
    EXPECT_GE(rep->total_tokens, last);
    last = rep->total_tokens;
  }
  done.store(true);
  asker.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GT(asks.load(), 0);
  ASSERT_TRUE((*stream)->close());
}

TEST_F(DocumentStreamTest, ErrorsAreClear) {
  const std::string dir = test::scratch_dir("stream-errors") + "/s";
  auto stream = engine_->open_stream(dir);
  ASSERT_TRUE(stream);
  auto empty = (*stream)->append("");
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().code, errc::invalid_argument);
  // A second stream object on the same store opens: the writer lock is taken per append, not per stream.
  auto other = engine_->open_stream(dir);
  EXPECT_TRUE(other);
  // A store made by another model is refused.
  Config c = stream_config();
  c.model.path = test::data_model("stories260K-f16.gguf");
  auto f16 = Engine::open(c);
  ASSERT_TRUE(f16);
  ASSERT_TRUE((*stream)->append(document(3)));
  auto refused = (*f16)->open_stream(dir);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, errc::model_mismatch);
}

}  // namespace
}  // namespace ilre
