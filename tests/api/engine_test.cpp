// End to end on stories260K through the library API: ingest -> store -> ask, and the faults around it.
#include "ilre/engine.h"

#include <gtest/gtest.h>

#include <sstream>

#include <filesystem>
#include <fstream>
#include <thread>

#include "model/model.h"
#include "retrieval/prompt.h"
#include "storage/store_reader.h"
#include "stories_fixture.h"
#include "support/paths.h"
#include "support/tiny_model.h"

namespace fs = std::filesystem;

namespace ilre {
namespace {

using test::stories_config;

std::string story(int sentences) {
  return test::sentences_of({"Lily went to the park with her mom. ", "The sun was warm and the sky was blue. ",
                             "Tom had a red ball and a small dog. ", "They played until it was time to eat. ",
                             "The cat sat on the mat and looked at the bird. "},
                            sentences);
}

std::shared_ptr<Engine> open(const Config& c) {
  auto e = Engine::open(c);
  EXPECT_TRUE(e) << (e ? "" : e.error().what());
  return e ? *e : nullptr;
}

TEST(EngineEndToEnd, IngestOnceAskManyAppend) {
  auto engine = open(stories_config());
  ASSERT_TRUE(engine);
  const std::string dir = test::scratch_dir("e2e") + "/store";
  auto rep = engine->ingest_text(story(200), dir, {});
  ASSERT_TRUE(rep) << rep.error().what();
  EXPECT_GT(rep->tokens_added, 1500);
  EXPECT_EQ(rep->total_tokens, rep->tokens_added);
  EXPECT_GT(rep->segments_added, 4);
  EXPECT_EQ(rep->layer, 2);
  EXPECT_GT(rep->key_compression_ratio, 1.0);

  std::string streamed;
  AskOptions opt;
  opt.on_token = [&](std::string_view piece) {
    streamed += piece;
    return true;
  };
  auto a = engine->ask(dir, "Who went to the park?", opt);
  ASSERT_TRUE(a) << a.error().what();
  EXPECT_TRUE(a->compressed);
  EXPECT_EQ(a->recalled, 96);
  EXPECT_EQ(a->context_tokens, rep->total_tokens);
  EXPECT_EQ(a->text, streamed);
  EXPECT_GT(a->generated_tokens, 0);
  int64_t in_spans = 0;
  for (auto [s, e] : a->spans) {
    EXPECT_LT(s, e);
    in_spans += e - s;
  }
  EXPECT_EQ(in_spans, 96);
  EXPECT_EQ(a->spans.front().first, 0);  // the sink is always recalled
  // A question never runs the document prefill again: only the query is encoded.
  EXPECT_EQ(a->timings_ms.count("prefill"), 0u);
  EXPECT_EQ(a->timings_ms.count("spill"), 0u);

  auto a2 = engine->ask(dir, "What did Tom have?", {});
  ASSERT_TRUE(a2);
  EXPECT_EQ(a2->context_tokens, a->context_tokens);

  IngestOptions more;
  more.append = true;
  auto rep2 = engine->ingest_text(story(50), dir, more);
  ASSERT_TRUE(rep2) << rep2.error().what();
  EXPECT_EQ(rep2->total_tokens, rep->total_tokens + rep2->tokens_added);
  auto a3 = engine->ask(dir, "Who went to the park?", {});
  ASSERT_TRUE(a3);
  EXPECT_EQ(a3->context_tokens, rep2->total_tokens);
}

// recall.policy = hybrid in ask: the lexical prior from the stored tokens lifts the one passage that holds
// the question's rare words, which attention at layer 2 of stories260K alone does not single out; the
// eval's ilre method fuses the same prior (retrieval/lexical.h), so ask and eval recall alike.
TEST(EngineEndToEnd, HybridPolicyRecallsThePassageWithTheQuestionsWords) {
  const std::string text = story(120) + "The purple dragon named Zorblax guarded the copper gate. " + story(120);
  Config attention = stories_config();
  attention.recall.budget = 24;  // the sink (8) and 16 tokens
  attention.recall.policy = "attention";
  Config hybrid = attention;
  hybrid.recall.policy = "hybrid";
  hybrid.recall.lexical_weight = 8.0;
  hybrid.recall.lexical_window = 8;
  auto engine = open(hybrid);
  ASSERT_TRUE(engine);
  const std::string dir = test::scratch_dir("hybrid") + "/store";
  ASSERT_TRUE(engine->ingest_text(text, dir, {}));
  auto a = engine->ask(dir, "What did the purple dragon Zorblax guard?", {});
  ASSERT_TRUE(a) << a.error().what();
  EXPECT_EQ(a->recalled, 24);
  EXPECT_EQ(a->timings_ms.count("lexical"), 1u);
  // Where the planted sentence sits: after the first story's tokens (BOS included).
  auto before = engine->tokenize(story(120));
  ASSERT_TRUE(before);
  const auto at = static_cast<int64_t>(before->size());
  auto overlaps_sentence = [at](const Answer& ans) {
    for (auto [s, e] : ans.spans) {
      if (s < at + 14 && e > at) return true;
    }
    return false;
  };
  EXPECT_TRUE(overlaps_sentence(*a));
  // Attention alone at this budget recalls elsewhere: the prior, not chance, found the sentence.
  auto plain = open(attention);
  ASSERT_TRUE(plain);
  auto b = plain->ask(dir, "What did the purple dragon Zorblax guard?", {});
  ASSERT_TRUE(b) << b.error().what();
  EXPECT_EQ(b->timings_ms.count("lexical"), 0u);
  EXPECT_FALSE(overlaps_sentence(*b));
}

// query.chat in ask: the recalled tokens, the chat lead after the BOS and the chat query form the final
// prompt (retrieval/prompt.h), and the budget leaves room for the lead.
TEST(EngineEndToEnd, ChatQueryWrapsTheRecalledDocumentInAUserTurn) {
  Config plain = stories_config();
  Config chat = plain;
  chat.query.chat = true;
  auto engine = open(plain);
  ASSERT_TRUE(engine);
  const std::string dir = test::scratch_dir("chat") + "/store";
  ASSERT_TRUE(engine->ingest_text(story(100), dir, {}));
  const std::string question = "Who went to the park?";
  auto a = engine->ask(dir, question, {});
  ASSERT_TRUE(a) << a.error().what();
  auto chatty = open(chat);
  ASSERT_TRUE(chatty);
  auto b = chatty->ask(dir, question, {});
  ASSERT_TRUE(b) << b.error().what();
  const std::shared_ptr<const model::Model> m = model::Model::load(plain.model.path);
  const retrieval::QueryPrompt pq = retrieval::query_prompt(plain, *m, question);
  const retrieval::QueryPrompt cq = retrieval::query_prompt(chat, *m, question);
  ASSERT_FALSE(cq.lead.empty());
  EXPECT_EQ(a->prompt_tokens, a->recalled + static_cast<int64_t>(pq.query.size()));
  EXPECT_EQ(b->recalled, a->recalled);
  EXPECT_EQ(b->prompt_tokens, b->recalled + static_cast<int64_t>(cq.lead.size() + cq.query.size()));
}

// Streaming into segments must give the keys a single pass over the whole text gives, whatever the
// chunk boundaries: ingest the same text twice with different read sizes.
TEST(EngineEndToEnd, ReadChunkingDoesNotChangeTheStore) {
  Config a = stories_config();
  Config b = stories_config();
  a.pipeline.read_chunk_bytes = 7;
  b.pipeline.read_chunk_bytes = 4096;
  const std::string base = test::scratch_dir("chunking");
  auto ea = open(a), eb = open(b);
  ASSERT_TRUE(ea && eb);
  ASSERT_TRUE(ea->ingest_text(story(80), base + "/a", {}));
  ASSERT_TRUE(eb->ingest_text(story(80), base + "/b", {}));
  auto ra = storage::StoreReader::open(base + "/a");
  auto rb = storage::StoreReader::open(base + "/b");
  ASSERT_TRUE(ra && rb);
  ASSERT_EQ(ra->n_tokens(), rb->n_tokens());
  ASSERT_EQ(ra->segments().size(), rb->segments().size());
  for (size_t i = 0; i < ra->segments().size(); ++i) {
    auto sa = ra->read_segment(i, storage::KeyFormat::f16);
    auto sb = rb->read_segment(i, storage::KeyFormat::f16);
    ASSERT_TRUE(sa && sb);
    EXPECT_EQ(sa->tokens, sb->tokens);
    EXPECT_EQ(sa->keys_16, sb->keys_16);
  }
}

TEST(EngineEndToEnd, StreamIngestMatchesTextIngestAndOpensAsAStore) {
  auto engine = open(stories_config());
  ASSERT_TRUE(engine);
  const std::string base = test::scratch_dir("stream");
  std::istringstream doc(story(60));
  auto rs = engine->ingest(doc, base + "/s", {});
  ASSERT_TRUE(rs) << rs.error().what();
  auto rt = engine->ingest_text(story(60), base + "/t", {});
  ASSERT_TRUE(rt) << rt.error().what();
  EXPECT_EQ(rs->total_tokens, rt->total_tokens);

  auto store = engine->open_store(base + "/s");
  ASSERT_TRUE(store) << store.error().what();
  EXPECT_EQ(store->tokens, rs->total_tokens);
  EXPECT_EQ(store->layer, 2);
  EXPECT_EQ(store->segments, rs->segments_added);
  EXPECT_GT(store->stored_bytes, 0u);
  EXPECT_TRUE(store->resumable);
  auto a = engine->ask(*store, "Who had a ball?", {});
  ASSERT_TRUE(a) << a.error().what();
  EXPECT_EQ(a->context_tokens, store->tokens);

  Config other = stories_config();
  other.model.path = test::data_model("stories260K-f16.gguf");
  auto e16 = open(other);
  ASSERT_TRUE(e16);
  auto refused = e16->open_store(base + "/s");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, errc::model_mismatch);
}

TEST(EngineEndToEnd, ShortDocumentIsNotCompressed) {
  auto engine = open(stories_config());
  const std::string dir = test::scratch_dir("short") + "/s";
  ASSERT_TRUE(engine->ingest_text("Lily had a red ball.", dir, {}));
  auto a = engine->ask(dir, "What did Lily have?", {});
  ASSERT_TRUE(a) << a.error().what();
  EXPECT_FALSE(a->compressed);
  EXPECT_EQ(a->recalled, a->context_tokens);
}

// A budget past stories260K's 512-token context: with decode.dca auto the final pass runs the whole
// recalled prompt with dual chunk attention; with dca off the budget is capped to fit the window.
TEST(EngineEndToEnd, BudgetPastTheWindowRunsWithDca) {
  Config c = stories_config();
  c.recall.budget = 1200;
  c.decode.stop_at_newline = false;  // the answer goes on past the trained context, token by token
  c.decode.max_tokens = 16;
  auto engine = open(c);
  ASSERT_TRUE(engine);
  const std::string dir = test::scratch_dir("dca") + "/s";
  ASSERT_TRUE(engine->ingest_text(story(200), dir, {}));
  auto a = engine->ask(dir, "Who went to the park?", {});
  ASSERT_TRUE(a) << a.error().what();
  EXPECT_TRUE(a->dca);
  EXPECT_EQ(a->recalled, 1200);
  EXPECT_GT(a->prompt_tokens, 512);
  EXPECT_EQ(a->generated_tokens, 16) << a->text;

  c.decode.dca = "off";
  auto plain = open(c);
  ASSERT_TRUE(plain);
  auto b = plain->ask(dir, "Who went to the park?", {});
  ASSERT_TRUE(b) << b.error().what();
  EXPECT_FALSE(b->dca);
  EXPECT_LT(b->recalled, 512);
  EXPECT_LE(b->prompt_tokens + c.decode.max_tokens, 512);
}

TEST(EngineFaults, BadInputsGetClearErrors) {
  auto engine = open(stories_config());
  const std::string base = test::scratch_dir("faults");
  auto empty = engine->ingest_text("", base + "/empty", {});
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().code, errc::invalid_argument);
  {
    std::ofstream(base + "/empty.txt").close();
    auto r = engine->ingest_file(base + "/empty.txt", base + "/empty2", {});
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("empty"), std::string::npos);
  }
  auto missing = engine->ingest_file(base + "/nope.txt", base + "/s1", {});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, errc::io_failed);

  ASSERT_TRUE(engine->ingest_text(story(20), base + "/ok", {}));
  auto no_q = engine->ask(base + "/ok", "   ", {});
  ASSERT_FALSE(no_q);
  EXPECT_EQ(no_q.error().code, errc::invalid_argument);
  auto no_store = engine->ask(base + "/none", "Who?", {});
  ASSERT_FALSE(no_store);

  // Creating over an existing store is refused rather than mixing two documents.
  auto again = engine->ingest_text(story(5), base + "/ok", {});
  ASSERT_FALSE(again);
}

TEST(EngineFaults, InvalidUtf8IsReplacedAndCounted) {
  auto engine = open(stories_config());
  const std::string dir = test::scratch_dir("utf8") + "/s";
  auto r = engine->ingest_text(std::string("Lily \xff\xfe saw a \xc3 dog. ") + story(10), dir, {});
  ASSERT_TRUE(r) << r.error().what();
  EXPECT_EQ(r->replaced_bytes, 3u);
}

TEST(EngineFaults, StoreFromAnotherModelIsRefused) {
  const std::string base = test::scratch_dir("mismatch");
  test::TinyModelSpec spec;
  Config other = stories_config();
  other.model.path = test::write_tiny_model(base, spec);
  auto e1 = open(other);
  ASSERT_TRUE(e1);
  ASSERT_TRUE(e1->ingest_text(story(20), base + "/store", {}));
  auto e2 = open(stories_config());
  auto a = e2->ask(base + "/store", "Who?", {});
  ASSERT_FALSE(a);
  EXPECT_EQ(a.error().code, errc::model_mismatch);
  IngestOptions app;
  app.append = true;
  auto r = e2->ingest_text(story(5), base + "/store", app);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::model_mismatch);
}

TEST(EngineFaults, CorruptSegmentIsNamed) {
  auto engine = open(stories_config());
  const std::string dir = test::scratch_dir("corrupt") + "/s";
  ASSERT_TRUE(engine->ingest_text(story(100), dir, {}));
  const fs::path seg = fs::path(dir) / "segments" / "seg-000001.ilk";
  ASSERT_TRUE(fs::exists(seg));
  {
    std::fstream f(seg, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fs::file_size(seg) / 2));
    f.put('\x5a');
  }
  auto a = engine->ask(dir, "Who?", {});
  ASSERT_FALSE(a);
  EXPECT_EQ(a.error().code, errc::checksum_mismatch);
  EXPECT_NE(a.error().message.find("seg-000001"), std::string::npos) << a.error().message;
}

// Cancelling an ingest mid-way leaves a store that reopens, is consistent up to its last complete segment
// and can answer questions about what it holds.
TEST(EngineFaults, CancelledIngestLeavesAConsistentStore) {
  Config c = stories_config();
  c.pipeline.read_chunk_bytes = 256;
  auto engine = open(c);
  const std::string dir = test::scratch_dir("cancel") + "/s";
  IngestOptions opt;
  CancelHandle cancel = opt.cancel;
  opt.on_progress = [cancel](const Progress& p) {
    if (p.tokens > 600) cancel.cancel("test stops the ingest");
  };
  auto r = engine->ingest_text(story(3000), dir, opt);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::cancelled);
  auto reader = storage::StoreReader::open(dir);
  ASSERT_TRUE(reader) << reader.error().what();
  EXPECT_GT(reader->n_tokens(), 0);
  EXPECT_TRUE(reader->verify());
  EXPECT_TRUE(reader->has_state());
  auto a = engine->ask(dir, "Who went to the park?", {});
  EXPECT_TRUE(a) << (a ? "" : a.error().what());
}

}  // namespace
}  // namespace ilre
