#include "ilre/openai.h"

#include <nlohmann/json.hpp>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <optional>
#include <cstring>

#include "api/json.h"
#include "api/random_id.h"
#include "api/text_stream.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace ilre::openai {
namespace {

// Room kept for the answer when deciding whether a prompt fits the context, if the request names none.
constexpr int64_t kDefaultAnswerRoom = 256;

enum class Kind { chat, text };

struct Request {
  Kind kind = Kind::chat;
  std::vector<ChatMessage> messages;  // chat
  std::string prompt;                 // text
  std::optional<std::vector<int32_t>> prompt_ids;  // text given as token ids
  SamplingOverrides sampling;
  std::vector<std::string> stop;
  bool stream = false;
  std::optional<std::string> document;
  std::optional<int64_t> budget;
};

[[noreturn]] void bad(const std::string& message) { throw Exception(errc::invalid_argument, message); }

std::optional<int64_t> opt_int(const json& body, const char* key, int64_t lo, int64_t hi) {
  const auto it = body.find(key);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_number_integer()) bad(std::string("'") + key + "' must be an integer");
  const auto v = it->get<int64_t>();
  if (v < lo || v > hi) bad(std::string("'") + key + "' must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return v;
}

std::optional<double> opt_number(const json& body, const char* key, double lo, double hi) {
  const auto it = body.find(key);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_number()) bad(std::string("'") + key + "' must be a number");
  const double v = it->get<double>();
  if (!(v >= lo && v <= hi)) bad(std::string("'") + key + "' must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return v;
}

bool opt_bool(const json& body, const char* key) {
  const auto it = body.find(key);
  if (it == body.end() || it->is_null()) return false;
  if (!it->is_boolean()) bad(std::string("'") + key + "' must be true or false");
  return it->get<bool>();
}

// OpenAI content: a string, or an array of parts of which the text parts count.
std::string message_content(const json& content, size_t index) {
  if (content.is_string()) return content.get<std::string>();
  if (content.is_null()) return {};
  if (!content.is_array()) bad("messages[" + std::to_string(index) + "].content must be a string or an array of parts");
  std::string text;
  for (const json& part : content) {
    const auto type = part.is_object() ? part.find("type") : part.end();
    if (!part.is_object() || type == part.end() || !type->is_string() || *type != "text" || !part.contains("text") ||
        !part["text"].is_string()) {
      bad("messages[" + std::to_string(index) + "].content: only text parts are supported");
    }
    text += part["text"].get<std::string>();
  }
  return text;
}

std::vector<ChatMessage> parse_messages(const json& body) {
  const auto it = body.find("messages");
  if (it == body.end() || !it->is_array() || it->empty()) bad("'messages' must be a non-empty array");
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < it->size(); ++i) {
    const json& m = (*it)[i];
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) {
      bad("messages[" + std::to_string(i) + "] needs a string 'role'");
    }
    std::string role = m["role"].get<std::string>();
    if (role == "developer") role = "system";
    if (role != "system" && role != "user" && role != "assistant") {
      bad("messages[" + std::to_string(i) + "].role '" + role + "' is not system, developer, user or assistant");
    }
    out.push_back({std::move(role), message_content(m.value("content", json()), i)});
  }
  return out;
}

std::vector<std::string> parse_stop(const json& body) {
  const auto it = body.find("stop");
  if (it == body.end() || it->is_null()) return {};
  if (it->is_string()) return {it->get<std::string>()};
  if (!it->is_array() || it->size() > 4) bad("'stop' must be a string or an array of up to 4 strings");
  std::vector<std::string> out;
  for (const json& s : *it) {
    if (!s.is_string()) bad("'stop' must be a string or an array of up to 4 strings");
    out.push_back(s.get<std::string>());
  }
  return out;
}

Request parse_request(std::string_view text, Kind kind) {
  json body;
  try {
    body = json::parse(text);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for numbers such as 1e400
    throw Exception(errc::bad_json, std::string("request body is not valid JSON: ") + e.what());
  }
  if (!body.is_object()) bad("request body must be a JSON object");
  Request r;
  r.kind = kind;
  if (kind == Kind::chat) {
    r.messages = parse_messages(body);
  } else {
    const auto it = body.find("prompt");
    if (it == body.end()) bad("'prompt' is required");
    if (it->is_array() && it->size() == 1 && (*it)[0].is_string()) {
      r.prompt = (*it)[0].get<std::string>();
    } else if (it->is_array() && !it->empty() && (*it)[0].is_number_integer()) {
      std::vector<int32_t> ids;
      for (const json& v : *it) {
        if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX) bad("'prompt' token ids must be non-negative integers");
        ids.push_back(v.get<int32_t>());
      }
      r.prompt_ids = std::move(ids);
    } else if (it->is_string()) {
      r.prompt = it->get<std::string>();
    } else {
      bad("'prompt' must be a string, an array of one string, or an array of token ids");
    }
    if (opt_bool(body, "echo")) throw Exception(errc::unsupported, "'echo' is not supported");
  }
  if (auto n = opt_int(body, "n", 1, 1000); n && *n != 1) throw Exception(errc::unsupported, "only n = 1 is supported");
  auto max_tokens = opt_int(body, "max_completion_tokens", 0, 1 << 24);
  if (!max_tokens) max_tokens = opt_int(body, "max_tokens", 0, 1 << 24);
  if (max_tokens) r.sampling.max_tokens = static_cast<int32_t>(*max_tokens);
  if (auto t = opt_number(body, "temperature", 0.0, 2.0)) r.sampling.temperature = static_cast<float>(*t);
  if (auto p = opt_number(body, "top_p", 1e-9, 1.0)) r.sampling.top_p = static_cast<float>(*p);
  if (auto k = opt_int(body, "top_k", 0, 1 << 20)) r.sampling.top_k = static_cast<int32_t>(*k);
  if (auto s = opt_int(body, "seed", INT64_MIN, INT64_MAX)) r.sampling.seed = static_cast<uint64_t>(*s);
  r.stop = parse_stop(body);
  r.stream = opt_bool(body, "stream");
  if (const auto it = body.find("ilre"); it != body.end() && !it->is_null()) {
    if (!it->is_object()) bad("'ilre' must be an object");
    if (const auto d = it->find("document"); d != it->end() && !d->is_null()) {
      if (!d->is_string() || d->get<std::string>().empty()) bad("'ilre.document' must be a non-empty string");
      r.document = d->get<std::string>();
    }
    r.budget = opt_int(*it, "budget", 1, int64_t{1} << 40);
  }
  return r;
}

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// A long prompt split into what ILRe needs: the document and the question about it.
struct Split {
  std::string context;
  std::string question;
};

// The last paragraph of a text is its question; failing a blank line, its last line.
std::optional<Split> split_last_paragraph(const std::string& text) {
  const size_t end = text.find_last_not_of(" \t\r\n");
  if (end == std::string::npos) return std::nullopt;
  for (const char* sep : {"\n\n", "\n"}) {
    const size_t at = text.rfind(sep, end);
    if (at != std::string::npos && at > 0) {
      Split s{text.substr(0, at), text.substr(at + std::strlen(sep), end + 1 - at - std::strlen(sep))};
      if (s.context.find_first_not_of(" \t\r\n") != std::string::npos) return s;
    }
  }
  return std::nullopt;
}

size_t last_user_message(const std::vector<ChatMessage>& messages) {
  for (size_t i = messages.size(); i-- > 0;) {
    if (messages[i].role == "user") return i;
  }
  bad("the conversation has no user message to answer");
}

Split split_chat(const std::vector<ChatMessage>& messages) {
  const size_t last_user = last_user_message(messages);
  Split s;
  for (size_t i = 0; i < last_user; ++i) {
    if (!s.context.empty()) s.context += "\n\n";
    s.context += messages[i].content;
  }
  s.question = messages[last_user].content;
  if (s.context.find_first_not_of(" \t\r\n") == std::string::npos) {
    auto p = split_last_paragraph(s.question);
    if (!p) bad("the prompt is longer than the model's context and its last paragraph cannot be told apart as the question");
    p->context = s.context.empty() ? p->context : s.context + "\n\n" + p->context;
    return *p;
  }
  return s;
}

// A temporary store for one request's context; removed however the request ends.
class ScratchStore {
 public:
  explicit ScratchStore(const std::string& root) {
    static std::atomic<uint64_t> counter{0};
    const fs::path base = root.empty() ? fs::temp_directory_path() : fs::path(root);
    std::error_code ec;
    fs::create_directories(base, ec);
    dir_ = (base / ("request-" + std::to_string(::getpid()) + "-" + std::to_string(counter.fetch_add(1)) + "-" +
                    api::random_hex(8)))
               .string();
  }
  ~ScratchStore() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  ScratchStore(const ScratchStore&) = delete;
  ScratchStore& operator=(const ScratchStore&) = delete;
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
};

// One response being built, streamed or not: the same text, usage and ilre object either way.
class Reply {
 public:
  Reply(const Request& req, const Engine& engine, const RequestContext& ctx)
      : req_(req), ctx_(ctx), id_((req.kind == Kind::chat ? "chatcmpl-" : "cmpl-") + api::random_hex(24)), created_(unix_now()),
        model_(engine.model_info().name), stops_(req.stop) {}

  // The piece callback the engine calls; false stops generation (stop string, or the client left).
  bool piece(std::string_view text) {
    std::string out = stops_.feed(text);
    if (!out.empty()) {
      text_ += out;
      if (req_.stream && !send(chunk(out, nullptr))) {
        client_gone_ = true;
        ctx_.cancel.cancel("the client went away");
        return false;
      }
    }
    return !stops_.stopped();
  }
  bool client_gone() const { return client_gone_; }

  Response finish(std::string finish_reason, int64_t prompt_tokens, int64_t completion_tokens, json ilre_info) {
    if (stops_.stopped()) finish_reason = "stop";
    const std::string rest = stops_.flush();
    if (!rest.empty()) {
      text_ += rest;
      if (req_.stream) send(chunk(rest, nullptr));
    }
    const json usage = {{"prompt_tokens", prompt_tokens},
                        {"completion_tokens", completion_tokens},
                        {"total_tokens", prompt_tokens + completion_tokens}};
    Response r;
    if (req_.stream) {
      send(chunk("", &finish_reason));
      json last = envelope(req_.kind == Kind::chat ? "chat.completion.chunk" : "text_completion");
      last["choices"] = json::array();
      last["usage"] = usage;
      last["ilre"] = std::move(ilre_info);
      send(api::dump(last));
      send("[DONE]");
      r.streamed = true;
      return r;
    }
    json body = envelope(req_.kind == Kind::chat ? "chat.completion" : "text_completion");
    json choice = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish_reason}};
    if (req_.kind == Kind::chat) {
      choice["message"] = {{"role", "assistant"}, {"content", text_}};
    } else {
      choice["text"] = text_;
    }
    body["choices"] = json::array({choice});
    body["usage"] = usage;
    body["ilre"] = std::move(ilre_info);
    r.body = api::dump(body);
    return r;
  }

  // An error after events were sent is one more event; before, it is the response itself.
  Response fail(const Error& e) {
    Response r = error_response(e);
    if (!started_) return r;
    send(r.body);
    send("[DONE]");
    r.body.clear();
    r.streamed = true;
    return r;
  }

 private:
  json envelope(const char* object) const {
    return {{"id", id_}, {"object", object}, {"created", created_}, {"model", model_}, {"system_fingerprint", nullptr}};
  }

  std::string chunk(const std::string& text, const std::string* finish_reason) {
    json c = envelope(req_.kind == Kind::chat ? "chat.completion.chunk" : "text_completion");
    json choice = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish_reason ? json(*finish_reason) : json()}};
    if (req_.kind == Kind::chat) {
      choice["delta"] = finish_reason ? json::object() : json{{"content", text}};
    } else {
      choice["text"] = text;
    }
    c["choices"] = json::array({choice});
    return api::dump(c);
  }

  bool send(const std::string& data) {
    if (!started_ && req_.kind == Kind::chat) {
      // OpenAI's first chunk carries the role alone.
      json first = envelope("chat.completion.chunk");
      first["choices"] = json::array({{{"index", 0}, {"delta", {{"role", "assistant"}, {"content", ""}}},
                                       {"logprobs", nullptr}, {"finish_reason", nullptr}}});
      started_ = true;
      if (!ctx_.on_event(api::dump(first))) return false;
    }
    started_ = true;
    return ctx_.on_event(data);
  }

  const Request& req_;
  const RequestContext& ctx_;
  std::string id_;
  int64_t created_;
  std::string model_;
  api::StopMatcher stops_;
  std::string text_;
  bool started_ = false;
  bool client_gone_ = false;
};

json answer_info(const Answer& a, const char* path, const std::optional<std::string>& document) {
  json info = {{"path", path},
               {"recalled", {{"spans", api::spans_json(a.spans)}, {"tokens", a.recalled}}},
               {"context_tokens", a.context_tokens},
               {"prompt_tokens", a.prompt_tokens},
               {"compressed", a.compressed},
               {"dca", a.dca},
               {"l_R", a.layer},
               {"timings_ms", a.timings_ms}};
  if (document) info["document"] = *document;
  return info;
}

Response answer_by_ilre(Engine& engine, const Request& req, const RequestContext& ctx, Reply& reply,
                        const std::string& store_dir, const char* path, std::map<std::string, double> extra_timings,
                        const std::string& question) {
  AskOptions opt;
  opt.sampling = req.sampling;
  opt.budget = req.budget;
  opt.cancel = ctx.cancel;
  opt.on_progress = ctx.on_progress;
  opt.on_token = [&reply](std::string_view piece) { return reply.piece(piece); };
  auto a = engine.ask(store_dir, question, opt);
  if (!a) return reply.fail(a.error());
  if (reply.client_gone()) return reply.fail(Error{errc::cancelled, "the client went away"});
  json info = answer_info(*a, path, req.document);
  for (auto& [k, v] : extra_timings) info["timings_ms"][k] = v;
  return reply.finish(a->finish_reason, a->prompt_tokens, a->generated_tokens, std::move(info));
}

Response answer_directly(Engine& engine, const Request& req, const RequestContext& ctx, Reply& reply,
                         const std::vector<int32_t>& prompt) {
  GenerateOptions opt;
  opt.sampling = req.sampling;
  opt.cancel = ctx.cancel;
  opt.on_progress = ctx.on_progress;
  opt.on_token = [&reply](std::string_view piece) { return reply.piece(piece); };
  auto c = engine.complete(prompt, opt);
  if (!c) return reply.fail(c.error());
  if (reply.client_gone()) return reply.fail(Error{errc::cancelled, "the client went away"});
  json info = {{"path", "direct"},
               {"context_tokens", static_cast<int64_t>(prompt.size())},
               {"dca", c->dca},
               {"l_R", engine.retrieval_layer()},
               {"timings_ms", c->timings_ms}};
  const int64_t generated = c->generated_tokens;
  return reply.finish(c->finish_reason, static_cast<int64_t>(prompt.size()), generated, std::move(info));
}

Response handle(Engine& engine, std::string_view body, const RequestContext& ctx, Kind kind) {
  Request req;
  try {
    req = parse_request(body, kind);
  } catch (const Exception& e) {
    return error_response(e.error());
  } catch (const json::exception& e) {  // a field of a type nlohmann refuses to convert: the client's mistake
    return error_response(Error{errc::invalid_argument, std::string("bad field in the request: ") + e.what()});
  }
  if (req.stream && !ctx.on_event) return error_response(400, "streaming is not available here", "invalid_request_error", "stream_unsupported");
  Reply reply(req, engine, ctx);
  auto run = [&]() -> Response {
    if (req.document) {
      if (!ctx.document_store) throw Exception(errc::invalid_argument, "'ilre.document' is not available here");
      auto dir = ctx.document_store(*req.document);
      if (!dir) return error_response(dir.error());
      const std::string question = kind == Kind::chat ? req.messages[last_user_message(req.messages)].content : req.prompt;
      return answer_by_ilre(engine, req, ctx, reply, *dir, "document", {}, question);
    }
    std::vector<int32_t> prompt;
    if (req.prompt_ids) {
      prompt = *req.prompt_ids;
    } else {
      auto text = kind == Kind::chat ? engine.chat_prompt(req.messages) : Result<std::string>(req.prompt);
      if (!text) return error_response(text.error());
      auto ids = engine.tokenize(*text, kind == Kind::chat);
      if (!ids) return error_response(ids.error());
      prompt = std::move(*ids);
    }
    const ModelInfo info = engine.model_info();
    const int64_t room = std::min<int64_t>(req.sampling.max_tokens.value_or(kDefaultAnswerRoom), info.context_length / 8);
    if (static_cast<int64_t>(prompt.size()) + room <= info.context_length) return answer_directly(engine, req, ctx, reply, prompt);
    // Token ids cannot be split into a document and a question: past the trained context they run whole,
    // with dual chunk attention (Engine::complete refuses what not even that may hold).
    if (req.prompt_ids) return answer_directly(engine, req, ctx, reply, prompt);
    Split split;
    if (kind == Kind::chat) {
      split = split_chat(req.messages);
    } else {
      auto s = split_last_paragraph(req.prompt);
      if (!s) bad("the prompt is longer than the model's context and its last paragraph cannot be told apart as the question");
      split = std::move(*s);
    }
    ScratchStore scratch(ctx.scratch_dir);
    IngestOptions in;
    in.cancel = ctx.cancel;
    in.on_progress = ctx.on_progress;
    auto ingested = engine.ingest_text(std::move(split.context), scratch.dir(), in);
    if (!ingested) return error_response(ingested.error());
    std::map<std::string, double> timings;
    timings["ingest"] = ingested->timings_ms.count("total") ? ingested->timings_ms.at("total") : 0.0;
    return answer_by_ilre(engine, req, ctx, reply, scratch.dir(), "ilre", std::move(timings), split.question);
  };
  auto r = catch_to_result(run);
  if (!r) return reply.fail(r.error());
  return *r;
}

}  // namespace

int http_status(errc code) noexcept {
  switch (code) {
    case errc::invalid_argument:
    case errc::bad_utf8:
    case errc::bad_json:
    case errc::out_of_range:
    case errc::unsupported: return 400;
    case errc::not_found: return 404;
    case errc::model_mismatch: return 409;
    case errc::cancelled: return 499;
    case errc::disk_full: return 507;
    case errc::queue_closed: return 503;
    default: return 500;
  }
}

Response error_response(int status, std::string_view message, std::string_view type, std::string_view code) {
  Response r;
  r.status = status;
  json err = {{"message", message}, {"type", type}, {"param", nullptr}, {"code", code.empty() ? json() : json(code)}};
  r.body = api::dump(json{{"error", std::move(err)}});
  return r;
}

Response error_response(const Error& error) {
  const int status = http_status(error.code);
  const char* type = status == 404   ? "not_found_error"
                     : status < 500  ? "invalid_request_error"
                     : status == 503 ? "unavailable_error"
                                     : "server_error";
  return error_response(status, error.message, type, errc_name(error.code));
}

Response chat_completions(Engine& engine, std::string_view request_body, const RequestContext& ctx) {
  return handle(engine, request_body, ctx, Kind::chat);
}

Response completions(Engine& engine, std::string_view request_body, const RequestContext& ctx) {
  return handle(engine, request_body, ctx, Kind::text);
}

Response models(const Engine& engine) {
  const ModelInfo info = engine.model_info();
  json model = {{"id", info.name},
                {"object", "model"},
                {"created", unix_now()},
                {"owned_by", "ilre"},
                {"meta",
                 {{"file", info.file},
                  {"architecture", info.architecture},
                  {"n_ctx_train", info.context_length},
                  {"n_vocab", info.vocab_size},
                  {"n_layer", info.n_layer},
                  {"l_R", info.retrieval_layer},
                  {"chat_template", info.chat_template}}}};
  Response r;
  r.body = api::dump(json{{"object", "list"}, {"data", json::array({model})}});
  return r;
}

}  // namespace ilre::openai
