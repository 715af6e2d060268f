// The OpenAI request handling of the library (include/ilre/openai.h) and what it stands on: direct
// completions with per-request sampling and stop strings, whole-character streaming, the long-prompt
// rule, error shapes, and all-or-nothing appends from a pull reader.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>

#include "api/text_stream.h"
#include "ilre/engine.h"
#include "ilre/openai.h"
#include "stories_fixture.h"
#include "support/paths.h"

namespace ilre {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

TEST(TextStream, Utf8JoinerReleasesWholeCharacters) {
  api::Utf8Joiner j;
  const std::string s = "a\xC3\xA9\xE6\x97\xA5\xF0\x9F\x98\x80z";  // a é 日 😀 z
  std::string out;
  for (char c : s) {
    const std::string piece = j.feed(std::string_view(&c, 1));
    if (!piece.empty()) {
      const auto lead = static_cast<unsigned char>(piece[0]);
      EXPECT_NE(lead & 0xC0, 0x80) << "a piece starts inside a character";
    }
    out += piece;
  }
  out += j.flush();
  EXPECT_EQ(out, s);
}

TEST(TextStream, StopMatcherAcrossPieces) {
  api::StopMatcher m({"STOP", "\n\n"});
  std::string out = m.feed("hello ST");
  EXPECT_EQ(out, "hello ");  // "ST" could be the start of STOP: held back
  out += m.feed("ill here S");
  EXPECT_EQ(out, "hello STill here ");
  out += m.feed("TOP and more");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(out, "hello STill here ");
  EXPECT_EQ(m.feed("x"), "");
  api::StopMatcher none({});
  EXPECT_EQ(none.feed("abc") + none.flush(), "abc");
}

class OpenAiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto e = Engine::open(test::stories_config());
    ASSERT_TRUE(e) << e.error().what();
    engine_ = *e;
  }
  static void TearDownTestSuite() { engine_.reset(); }
  static std::shared_ptr<Engine> engine_;

  static std::string scratch() { return (fs::path(test::scratch_dir("openai")) / "openai-scratch").string(); }
};
std::shared_ptr<Engine> OpenAiTest::engine_;

TEST_F(OpenAiTest, CompleteHonoursOverridesAndStops) {
  auto prompt = engine_->tokenize("Once upon a time");
  ASSERT_TRUE(prompt);
  GenerateOptions o;
  o.sampling.max_tokens = 20;
  o.sampling.temperature = 0.0f;
  auto a = engine_->complete(*prompt, o);
  ASSERT_TRUE(a) << a.error().what();
  EXPECT_EQ(a->generated_tokens, 20);
  EXPECT_EQ(a->finish_reason, "length");
  ASSERT_GT(a->text.size(), 6u);
  GenerateOptions s = o;
  s.stop = {a->text.substr(4, 3)};
  std::string streamed;
  s.on_token = [&](std::string_view p) {
    streamed += p;
    return true;
  };
  auto b = engine_->complete(*prompt, s);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->finish_reason, "stop");
  EXPECT_EQ(b->text, a->text.substr(0, a->text.find(s.stop[0])));
  EXPECT_EQ(streamed, b->text);
  GenerateOptions bad;
  bad.sampling.top_p = 0.0f;
  EXPECT_EQ(engine_->complete(*prompt, bad).error().code, errc::invalid_argument);
  std::vector<int32_t> too_long(8 * 512, 5);  // past 8x the trained context: not even DCA may hold it
  EXPECT_EQ(engine_->complete(too_long, o).error().code, errc::out_of_range);
  EXPECT_EQ(engine_->complete({99999}, o).error().code, errc::out_of_range);
}

// stories260K is trained on 512 tokens: a longer prompt runs with dual chunk attention (decode.dca auto)
// and generates all it was asked for; with decode.dca=off it is refused; a prompt that fits does not
// switch to DCA for want of a max_tokens.
TEST_F(OpenAiTest, CompletePastTheTrainedContextRunsWithDca) {
  auto ids = engine_->tokenize("Once upon a time, there was a little girl named Lily. ");
  ASSERT_TRUE(ids);
  std::vector<int32_t> prompt;
  while (prompt.size() < 700) prompt.insert(prompt.end(), ids->begin() + 1, ids->end());
  prompt.insert(prompt.begin(), (*ids)[0]);
  GenerateOptions o;
  o.sampling.max_tokens = 12;
  o.sampling.temperature = 0.0f;
  auto a = engine_->complete(prompt, o);
  ASSERT_TRUE(a) << a.error().what();
  EXPECT_TRUE(a->dca);
  EXPECT_EQ(a->prompt_tokens, static_cast<int64_t>(prompt.size()));
  EXPECT_EQ(a->generated_tokens, 12);

  Config off = test::stories_config();
  off.decode.dca = "off";
  auto plain = Engine::open(off);
  ASSERT_TRUE(plain);
  auto refused = (*plain)->complete(prompt, o);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, errc::out_of_range);
  EXPECT_NE(refused.error().message.find("decode.dca"), std::string::npos) << refused.error().message;

  auto short_prompt = engine_->tokenize("Once upon a time");
  ASSERT_TRUE(short_prompt);
  GenerateOptions unbounded;
  unbounded.sampling.temperature = 0.0f;
  unbounded.stop = {"."};
  auto b = engine_->complete(*short_prompt, unbounded);
  ASSERT_TRUE(b) << b.error().what();
  EXPECT_FALSE(b->dca);
}

TEST_F(OpenAiTest, ChatShapesAndTheLongPromptRule) {
  openai::RequestContext ctx;
  ctx.scratch_dir = scratch();
  auto r = openai::chat_completions(*engine_, R"({"messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":5})", ctx);
  ASSERT_EQ(r.status, 200) << r.body;
  json j = json::parse(r.body);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(j["usage"]["completion_tokens"], 5);
  EXPECT_EQ(j["ilre"]["path"], "direct");
  // Over the 512-token context: the last paragraph is the question, the rest is recalled from.
  std::string doc = test::sentences_of({"Lily went to the park. ", "Tom had a red ball. ", "The sun was warm. "}, 300);
  json req = {{"messages", {{{"role", "user"}, {"content", doc + "\n\nWhat did Tom have?"}}}}, {"max_tokens", 4}};
  std::vector<std::string> events;
  ctx.on_event = [&](std::string_view e) {
    events.emplace_back(e);
    return true;
  };
  req["stream"] = true;
  r = openai::chat_completions(*engine_, req.dump(), ctx);
  EXPECT_TRUE(r.streamed);
  ASSERT_GE(events.size(), 4u);
  EXPECT_EQ(events.back(), "[DONE]");
  json usage = json::parse(events[events.size() - 2]);
  EXPECT_EQ(usage["ilre"]["path"], "ilre");
  EXPECT_GT(usage["ilre"]["context_tokens"].get<int64_t>(), 1000);
  EXPECT_TRUE(fs::is_empty(ctx.scratch_dir)) << "the request's store is removed";
  // A client that leaves mid-stream cancels the work.
  events.clear();
  ctx.on_event = [&](std::string_view e) {
    events.emplace_back(e);
    return events.size() < 2;
  };
  req["messages"][0]["content"] = "Once upon a time";
  req["max_tokens"] = 50;
  r = openai::chat_completions(*engine_, req.dump(), ctx);
  EXPECT_EQ(r.status, 499);
  EXPECT_LE(events.size(), 4u);
}

TEST_F(OpenAiTest, ErrorsHaveOpenAisShape) {
  openai::RequestContext ctx;
  for (const char* body : {"{", "[]", R"({"messages":[]})", R"({"messages":[{"role":"x","content":"a"}]})",
                           R"({"messages":[{"role":"user","content":"a"}],"temperature":"hot"})",
                           R"({"messages":[{"role":"user","content":"a"}],"stop":[1]})",
                           R"({"messages":[{"role":"user","content":"a"}],"stream":true})",
                           R"({"messages":[{"role":"user","content":"a"}],"ilre":{"document":"d"}})"}) {
    auto r = openai::chat_completions(*engine_, body, ctx);
    EXPECT_EQ(r.status, 400) << body << " -> " << r.body;
    json j = json::parse(r.body);
    EXPECT_TRUE(j["error"]["message"].is_string()) << r.body;
    EXPECT_TRUE(j["error"]["type"].is_string()) << r.body;
  }
  ctx.document_store = [](const std::string& id) -> Result<std::string> { return make_error(errc::not_found, "no " + id); };
  EXPECT_EQ(openai::chat_completions(*engine_, R"({"messages":[{"role":"user","content":"a"}],"ilre":{"document":"d"}})", ctx).status, 404);
  auto m = openai::models(*engine_);
  EXPECT_EQ(json::parse(m.body)["data"][0]["meta"]["n_ctx_train"], 512);
}

TEST_F(OpenAiTest, AtomicAppendFromAReaderIsAllOrNothing) {
  const std::string dir = (fs::path(test::scratch_dir("openai")) / "atomic-append").string();
  fs::remove_all(dir);
  auto stream = engine_->open_stream(dir);
  ASSERT_TRUE(stream);
  const std::string text = test::sentences_of({"Lily went to the park. ", "Tom had a red ball. "}, 200);
  IngestOptions keep;
  keep.keep_open = true;
  keep.atomic = true;
  ASSERT_TRUE((*stream)->append(text.substr(0, 2000), keep));
  const Store before = *engine_->open_store(dir);
  // A reader that delivers most of the rest, then breaks like a dropped upload.
  size_t at = 2000;
  auto broken = [&](char* buf, int64_t cap) -> Result<int64_t> {
    if (at >= text.size() - 100) return make_error(errc::io_failed, "the upload broke off");
    const size_t n = std::min<size_t>(static_cast<size_t>(cap), std::min<size_t>(700, text.size() - 100 - at));
    std::memcpy(buf, text.data() + at, n);
    at += n;
    return static_cast<int64_t>(n);
  };
  auto r = (*stream)->append(broken, keep);
  ASSERT_FALSE(r);
  const Store after = *engine_->open_store(dir);
  EXPECT_EQ(after.tokens, before.tokens);
  EXPECT_EQ(after.pending_tokens, before.pending_tokens);
  EXPECT_EQ(after.bytes, before.bytes);
  // The same text again, whole: the document is exactly the text acknowledged so far plus it.
  at = 2000;
  int calls = 0;
  auto whole = [&](char* buf, int64_t cap) -> Result<int64_t> {
    if (at == text.size()) return 0;
    if (++calls % 3 == 0) return -1;  // "nothing yet" now and then, as a slow socket
    const size_t n = std::min<size_t>(static_cast<size_t>(cap), std::min<size_t>(333, text.size() - at));
    std::memcpy(buf, text.data() + at, n);
    at += n;
    return static_cast<int64_t>(n);
  };
  ASSERT_TRUE((*stream)->append(whole, keep));
  const std::string ref = (fs::path(test::scratch_dir("openai")) / "atomic-ref").string();
  fs::remove_all(ref);
  IngestOptions open_ref;
  open_ref.keep_open = true;
  ASSERT_TRUE(engine_->ingest_text(text, ref, open_ref));
  EXPECT_EQ(engine_->open_store(dir)->tokens, engine_->open_store(ref)->tokens);
  EXPECT_EQ(engine_->open_store(dir)->pending_tokens, engine_->open_store(ref)->pending_tokens);
}

}  // namespace
}  // namespace ilre
