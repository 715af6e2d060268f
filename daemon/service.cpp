#include "daemon/service.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include "api/json.h"
#include "ilre/openai.h"

namespace ilre::daemon {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------------- slots

std::optional<Slots::Guard> Slots::acquire(const std::function<bool()>& gave_up) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (busy_ >= capacity_) {
    if (waiting_ >= max_waiting_) return std::nullopt;
    ++waiting_;
    while (busy_ >= capacity_) {
      cv_.wait_for(lock, std::chrono::milliseconds(250));
      if (busy_ < capacity_) break;
      if (gave_up && gave_up()) {
        --waiting_;
        return std::nullopt;
      }
    }
    --waiting_;
  }
  ++busy_;
  return Guard(this);
}

void Slots::release() {
  std::lock_guard<std::mutex> lock(mutex_);
  --busy_;
  cv_.notify_one();
}

int32_t Slots::busy() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return busy_;
}

int32_t Slots::waiting() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return waiting_;
}

// -------------------------------------------------------------------------------------------- metrics

namespace {

double rss_bytes() {
  std::ifstream in("/proc/self/statm");
  long pages_total = 0, pages_resident = 0;
  in >> pages_total >> pages_resident;
  return static_cast<double>(pages_resident) * static_cast<double>(::sysconf(_SC_PAGESIZE));
}

}  // namespace

struct Service::Metrics {
  prometheus::Registry registry;
  prometheus::Family<prometheus::Counter>& requests =
      prometheus::BuildCounter().Name("ilre_http_requests_total").Help("HTTP requests by route and status").Register(registry);
  prometheus::Family<prometheus::Histogram>& latency = prometheus::BuildHistogram()
                                                           .Name("ilre_http_request_duration_seconds")
                                                           .Help("HTTP request latency by route")
                                                           .Register(registry);
  prometheus::Counter& ingested =
      prometheus::BuildCounter().Name("ilre_ingested_tokens_total").Help("Document tokens ingested").Register(registry).Add({});
  prometheus::Gauge& ingest_rate = prometheus::BuildGauge()
                                       .Name("ilre_ingest_tokens_per_second")
                                       .Help("Ingest rate of the last finished append")
                                       .Register(registry)
                                       .Add({});
  prometheus::Counter& asks =
      prometheus::BuildCounter().Name("ilre_asks_total").Help("Questions answered (documents and ILRe completions)").Register(registry).Add({});
  prometheus::Histogram& ttft = prometheus::BuildHistogram()
                                    .Name("ilre_time_to_first_token_seconds")
                                    .Help("Time to the first answer token")
                                    .Register(registry)
                                    .Add({}, prometheus::Histogram::BucketBoundaries{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300});
  prometheus::Family<prometheus::Gauge>& queue_depth =
      prometheus::BuildGauge().Name("ilre_stage_queue_depth").Help("Messages waiting per stage, running pipelines").Register(registry);
  prometheus::Family<prometheus::Counter>& stage_busy =
      prometheus::BuildCounter().Name("ilre_stage_busy_seconds_total").Help("Busy time per stage, finished runs").Register(registry);
  prometheus::Gauge& documents =
      prometheus::BuildGauge().Name("ilre_documents").Help("Documents in the data directory").Register(registry).Add({});
  prometheus::Gauge& store_bytes =
      prometheus::BuildGauge().Name("ilre_store_bytes").Help("Bytes of all stores on disk").Register(registry).Add({});
  prometheus::Gauge& in_flight =
      prometheus::BuildGauge().Name("ilre_in_flight_requests").Help("Requests being handled").Register(registry).Add({});
  prometheus::Gauge& rss =
      prometheus::BuildGauge().Name("ilre_process_resident_memory_bytes").Help("Resident set size").Register(registry).Add({});
  std::mutex mutex;
  std::map<std::string, double> busy_seen;

  void observe(const std::string& route, int status, double seconds) {
    requests.Add({{"route", route}, {"status", std::to_string(status)}}).Increment();
    latency.Add({{"route", route}}, prometheus::Histogram::BucketBoundaries{0.001, 0.005, 0.025, 0.1, 0.5, 1, 5, 30, 120, 600})
        .Observe(seconds);
  }

  std::string render(Engine* engine, Documents* docs) {
    std::lock_guard<std::mutex> lock(mutex);
    if (engine) {
      for (const StageStats& s : engine->stage_stats()) {
        queue_depth.Add({{"stage", s.stage}}).Set(static_cast<double>(s.queue_depth));
        double& seen = busy_seen[s.stage];
        if (s.busy_seconds > seen) stage_busy.Add({{"stage", s.stage}}).Increment(s.busy_seconds - seen);
        seen = std::max(seen, s.busy_seconds);
      }
    }
    if (engine && docs) {
      double bytes = 0;
      const auto list = docs->list();
      for (const auto& d : list) {
        if (auto s = engine->open_store(d->dir)) bytes += static_cast<double>(s->stored_bytes);
      }
      documents.Set(static_cast<double>(list.size()));
      store_bytes.Set(bytes);
    }
    rss.Set(rss_bytes());
    return prometheus::TextSerializer().Serialize(registry.Collect());
  }
};

// --------------------------------------------------------------------------------------------- routes

namespace {

// Route and its document id, from the path; `name` labels the metrics (never the raw path).
struct Parsed {
  std::string name;
  std::string document;
};

Parsed parse_path(const std::string& path) {
  static constexpr std::string_view kDocs = "/v1/documents";
  if (path == "/health" || path == "/metrics" || path == "/v1/models" || path == "/v1/chat/completions" ||
      path == "/v1/completions" || path == "/v1/documents") {
    return {path, {}};
  }
  if (path.rfind(std::string(kDocs) + "/", 0) == 0) {
    std::string rest = path.substr(kDocs.size() + 1);
    const size_t slash = rest.find('/');
    if (slash == std::string::npos) return {"/v1/documents/{id}", rest};
    const std::string action = rest.substr(slash + 1);
    rest.resize(slash);
    if (action == "append" || action == "ask" || action == "close") return {"/v1/documents/{id}/" + action, rest};
  }
  return {"other", {}};
}

void respond_json(Exchange& ex, int status, const json& body, const std::vector<std::pair<std::string, std::string>>& headers = {}) {
  ex.respond(status, api::dump(body), "application/json", headers);
}

void respond_error(Exchange& ex, int status, std::string_view message, std::string_view type, std::string_view code = {},
                   const std::vector<std::pair<std::string, std::string>>& headers = {}) {
  const openai::Response r = openai::error_response(status, message, type, code);
  ex.respond(r.status, r.body, "application/json", headers);
}

void respond_error(Exchange& ex, const Error& e) {
  const openai::Response r = openai::error_response(e);
  ex.respond(r.status, r.body);
}

void busy(Exchange& ex, const char* what) {
  respond_error(ex, 503, std::string("the daemon is at capacity (") + what + "); retry shortly", "unavailable_error",
                "busy", {{"Retry-After", "1"}});
}

// The whole body, or nullopt after answering 413 (over the limit) or 400 (the client broke off).
std::optional<std::string> read_body_or_respond(Exchange& ex, uint64_t limit) {
  auto body = ex.read_body(limit);
  if (body) return std::move(*body);
  if (body.error().code == errc::out_of_range) {
    respond_error(ex, 413, body.error().message, "invalid_request_error", "body_too_large");
  } else {
    respond_error(ex, 400, body.error().message, "invalid_request_error", "bad_body");
  }
  return std::nullopt;
}

std::optional<json> parse_json_body(Exchange& ex, uint64_t limit) {
  auto body = read_body_or_respond(ex, limit);
  if (!body) return std::nullopt;
  if (body->empty()) return json::object();
  try {
    json j = json::parse(*body);
    if (!j.is_object()) {
      respond_error(ex, 400, "the body must be a JSON object", "invalid_request_error", "bad_json");
      return std::nullopt;
    }
    return j;
  } catch (const json::exception& e) {  // parse_error, and out_of_range for numbers such as 1e400
    respond_error(ex, 400, std::string("the body is not valid JSON: ") + e.what(), "invalid_request_error", "bad_json");
    return std::nullopt;
  }
}

json document_json(Engine& engine, const Document& doc) {
  json j = {{"id", doc.id}, {"object", "document"}};
  if (auto s = engine.open_store(doc.dir)) {
    j["tokens"] = s->tokens;
    j["pending_tokens"] = s->pending_tokens;
    j["open"] = s->open;
    j["bytes"] = s->bytes;
    j["stored_bytes"] = s->stored_bytes;
    j["l_R"] = s->layer;
    j["created_at"] = s->created_at;
    j["updated_at"] = s->updated_at;
  } else {
    j["error"] = s.error().what();
  }
  j["state"] = doc.appending.load() ? "ingesting" : "ready";
  if (doc.appending.load()) {
    j["progress"] = {{"bytes", doc.append_bytes.load()}, {"tokens", doc.append_tokens.load()}};
  }
  return j;
}

// Runs `fn` with a cancel handle that the shutdown can reach and that a client leaving triggers.
class Tracked {
 public:
  Tracked(std::mutex& m, std::set<std::shared_ptr<CancelHandle>>& set) : m_(m), set_(set), handle_(std::make_shared<CancelHandle>()) {
    std::lock_guard<std::mutex> lock(m_);
    set_.insert(handle_);
  }
  ~Tracked() {
    std::lock_guard<std::mutex> lock(m_);
    set_.erase(handle_);
  }
  const CancelHandle& handle() const { return *handle_; }

 private:
  std::mutex& m_;
  std::set<std::shared_ptr<CancelHandle>>& set_;
  std::shared_ptr<CancelHandle> handle_;
};

}  // namespace

struct Service::Route {
  Parsed parsed;
  std::shared_ptr<Engine> engine;
  std::shared_ptr<Documents> docs;
};

Service::Service(ServiceOptions options)
    : options_(std::move(options)),
      asks_(std::max(1, options_.parallel), std::max(0, options_.max_waiting)),
      ingests_(std::max(1, options_.parallel), std::max(0, options_.max_waiting)),
      metrics_(std::make_unique<Metrics>()) {}

Service::~Service() = default;

void Service::set_ready(std::shared_ptr<Engine> engine, std::shared_ptr<Documents> documents) {
  std::lock_guard<std::mutex> lock(mutex_);
  engine_ = std::move(engine);
  documents_ = std::move(documents);
}

void Service::cancel_all() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& h : running_) h->cancel("the daemon is shutting down");
}

int64_t Service::in_flight() const { return static_cast<int64_t>(metrics_->in_flight.Value()); }

void Service::handle(Exchange& ex) {
  const auto t0 = Clock::now();
  Route route;
  route.parsed = parse_path(ex.path());
  {
    std::lock_guard<std::mutex> lock(mutex_);
    route.engine = engine_;
    route.docs = documents_;
  }
  metrics_->in_flight.Increment();
  try {
    dispatch(ex, route);
  } catch (const std::exception& e) {
    spdlog::error("{} {}: {}", ex.method(), ex.path(), e.what());
    respond_error(ex, 500, std::string("internal error: ") + e.what(), "server_error");
  }
  metrics_->in_flight.Decrement();
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  metrics_->observe(route.parsed.name, ex.status(), seconds);
  spdlog::info("{} {} {} {}B {:.1f}ms{}{}", ex.method(), ex.path(), ex.status(), ex.bytes_sent(), seconds * 1000,
               route.parsed.document.empty() ? "" : " doc=", route.parsed.document);
}

void Service::dispatch(Exchange& ex, Route& route) {
  const std::string& name = route.parsed.name;
  const std::string& method = ex.method();
  if (name == "/health") {
    if (method != "GET" && method != "HEAD") return respond_error(ex, 405, "use GET", "invalid_request_error", "method_not_allowed");
    if (!route.engine) return respond_json(ex, 503, {{"status", "loading"}}, {{"Retry-After", "1"}});
    return respond_json(ex, 200, {{"status", "ok"}});
  }
  if (!options_.api_key.empty()) {
    const std::string auth = ex.header("Authorization").value_or("");
    const std::string given = auth.rfind("Bearer ", 0) == 0 ? auth.substr(7) : ex.header("X-Api-Key").value_or("");
    if (!secrets_equal(given, options_.api_key)) {
      return respond_error(ex, 401, "missing or wrong API key", "invalid_request_error", "invalid_api_key",
                           {{"WWW-Authenticate", "Bearer"}});
    }
  }
  if (name == "other") return respond_error(ex, 404, "no route " + method + " " + ex.path(), "not_found_error", "not_found");
  if (!route.engine) return respond_error(ex, 503, "the model is loading", "unavailable_error", "loading", {{"Retry-After", "1"}});
  Engine& engine = *route.engine;
  Documents& docs = *route.docs;
  auto need = [&](const char* m) {
    if (method == m || (method == "HEAD" && std::string_view(m) == "GET")) return true;  // HEAD: GET's head only
    respond_error(ex, 405, std::string("use ") + m, "invalid_request_error", "method_not_allowed", {{"Allow", m}});
    return false;
  };

  if (name == "/metrics") {
    if (!need("GET")) return;
    return ex.respond(200, metrics_->render(&engine, &docs), "text/plain; version=0.0.4");
  }
  if (name == "/v1/models") {
    if (!need("GET")) return;
    const openai::Response r = openai::models(engine);
    return ex.respond(r.status, r.body);
  }
  if (name == "/v1/chat/completions" || name == "/v1/completions") {
    if (!need("POST")) return;
    auto body = read_body_or_respond(ex, options_.max_body_bytes);
    if (!body) return;
    {
      // Only for the access log (the handler parses the request itself): which document it asks over.
      const json j = json::parse(*body, nullptr, false);
      if (j.is_object() && j.contains("ilre") && j["ilre"].is_object() && j["ilre"].value("document", json()).is_string()) {
        route.parsed.document = j["ilre"]["document"].get<std::string>();
      }
    }
    Tracked tracked(mutex_, running_);
    auto slot = asks_.acquire([&] { return ex.client_gone(); });
    if (!slot) return busy(ex, "all answer slots are taken");
    openai::RequestContext ctx;
    ctx.cancel = tracked.handle();
    ctx.scratch_dir = docs.scratch_dir();
    ctx.document_store = [&docs](const std::string& id) -> Result<std::string> {
      auto d = docs.find(id);
      if (!d) return make_error(errc::not_found, "no document '" + id + "'");
      return d->dir;
    };
    ctx.on_event = [&ex](std::string_view data) { return ex.send_event(data); };
    ctx.on_progress = [&ex, &ctx](const Progress&) {
      if (ex.client_gone()) ctx.cancel.cancel("the client went away");
    };
    const openai::Response r = name == "/v1/chat/completions" ? openai::chat_completions(engine, *body, ctx)
                                                              : openai::completions(engine, *body, ctx);
    slot.reset();  // before the answer goes out: the client's next request may follow at once
    if (r.status == 200) metrics_->asks.Increment();
    if (r.status == 200 && !r.streamed) {
      const json j = json::parse(r.body, nullptr, false);
      if (j.is_object() && j.contains("ilre") && j["ilre"].contains("timings_ms") && j["ilre"]["timings_ms"].contains("ttft")) {
        metrics_->ttft.Observe(j["ilre"]["timings_ms"]["ttft"].get<double>() / 1000.0);
      }
    }
    if (r.streamed) return ex.end_events();
    return ex.respond(r.status, r.body, "application/json", r.headers);
  }
  if (name == "/v1/documents") {
    if (method == "GET" || method == "HEAD") {
      json list = json::array();
      for (const auto& d : docs.list()) list.push_back(document_json(engine, *d));
      return respond_json(ex, 200, {{"object", "list"}, {"data", std::move(list)}});
    }
    if (!need("POST")) return;
    auto body = parse_json_body(ex, options_.max_body_bytes);
    if (!body) return;
    std::string id;
    if (body->contains("id") && !(*body)["id"].is_null()) {
      if (!(*body)["id"].is_string()) return respond_error(ex, 400, "'id' must be a string", "invalid_request_error", "bad_field");
      id = (*body)["id"].get<std::string>();
      if (id.empty()) return respond_error(ex, 400, "'id' must not be empty", "invalid_request_error", "bad_field");
    }
    std::optional<std::string> text;
    if (body->contains("text") && !(*body)["text"].is_null()) {
      if (!(*body)["text"].is_string()) return respond_error(ex, 400, "'text' must be a string", "invalid_request_error", "bad_field");
      text = (*body)["text"].get<std::string>();
    }
    route.parsed.document = id;
    auto created = docs.create(id, text && !text->empty());
    if (!created) return respond_error(ex, created.error());
    if (created->exists) return respond_error(ex, 409, "document '" + id + "' exists", "invalid_request_error", "exists");
    Document& doc = *created->doc;
    route.parsed.document = doc.id;
    json out = {{"id", doc.id}, {"tokens", 0}, {"state", "ready"}};
    if (text && !text->empty()) {
      std::unique_lock<std::mutex> write(doc.write_mutex);
      auto slot = ingests_.acquire([&] { return ex.client_gone(); });
      if (!slot) {
        write.unlock();
        (void)docs.remove(doc.id);
        return busy(ex, "all ingest slots are taken");
      }
      Tracked tracked(mutex_, running_);
      IngestOptions opt;
      opt.keep_open = true;
      opt.atomic = true;
      opt.cancel = tracked.handle();
      auto rep = doc.stream->append(*text, opt);
      if (rep) {
        if (auto p = docs.publish(doc); !p) rep = tl::unexpected(p.error());
      }
      write.unlock();
      if (!rep) {
        (void)docs.remove(doc.id);
        return respond_error(ex, rep.error());
      }
      metrics_->ingested.Increment(static_cast<double>(rep->tokens_added));
      metrics_->ingest_rate.Set(rep->tokens_per_second);
      out = document_json(engine, doc);
      out["appended_tokens"] = rep->tokens_added;
    } else {
      out = document_json(engine, doc);
    }
    return respond_json(ex, 201, out);
  }

  // /v1/documents/{id}[/...]
  auto doc = docs.find(route.parsed.document);
  if (!doc) {
    return respond_error(ex, 404, "no document '" + route.parsed.document + "'", "not_found_error", "document_not_found");
  }
  if (name == "/v1/documents/{id}") {
    if (method == "GET" || method == "HEAD") return respond_json(ex, 200, document_json(engine, *doc));
    if (!need("DELETE")) return;
    auto r = docs.remove(doc->id);
    if (!r && r.error().code == errc::invalid_argument) return respond_error(ex, 409, r.error().message, "invalid_request_error", "busy");
    if (!r) return respond_error(ex, r.error());
    return ex.respond(204, "", "application/json");
  }
  if (name == "/v1/documents/{id}/append" || name == "/v1/documents/{id}/close") {
    if (!need("POST")) return;
    const bool close = name.ends_with("/close") || ex.query("close").value_or("") == "true";
    std::unique_lock<std::mutex> write(doc->write_mutex, std::try_to_lock);
    if (!write.owns_lock()) return respond_error(ex, 409, "document '" + doc->id + "' has an append running", "invalid_request_error", "busy");
    if (docs.find(doc->id) != doc) return respond_error(ex, 404, "no document '" + doc->id + "'", "not_found_error", "document_not_found");
    auto slot = ingests_.acquire([&] { return ex.client_gone(); });
    if (!slot) return busy(ex, "all ingest slots are taken");
    if (!doc->stream) {
      auto s = engine.open_stream(doc->dir);
      if (!s) return respond_error(ex, s.error());
      doc->stream = std::move(*s);
    }
    Tracked tracked(mutex_, running_);
    IngestOptions opt;
    opt.keep_open = true;
    opt.atomic = true;
    opt.cancel = tracked.handle();
    doc->append_bytes = 0;
    doc->append_tokens = 0;
    opt.on_progress = [&](const Progress& p) {
      doc->append_bytes = p.processed;
      doc->append_tokens = p.tokens;
    };
    Result<IngestReport> rep = make_error(errc::internal, "no append ran");
    const auto started = std::chrono::steady_clock::now();
    doc->appending = true;
    if (name.ends_with("/append")) {
      if (ex.header("Content-Length").value_or("") == "0") {
        doc->appending = false;
        return respond_error(ex, 400, "nothing to append: the body is empty", "invalid_request_error", "empty_body");
      }
      std::optional<Error> upload_error;
      rep = doc->stream->append(
          [&ex, &upload_error](char* buf, int64_t cap) {
            auto n = ex.read_body_some(buf, cap, std::chrono::milliseconds(20));
            if (!n) upload_error = n.error();
            return n;
          },
          opt);
      // The client's upload broke (a bad chunk, a truncated body, silence): its fault, and the document is
      // as it was (the append is all or nothing).
      if (!rep && upload_error) {
        doc->appending = false;
        return respond_error(ex, 400, upload_error->message + "; nothing of this upload was kept", "invalid_request_error",
                             "bad_body");
      }
    }
    if ((rep || name.ends_with("/close")) && close) {
      const int64_t appended = rep ? rep->tokens_added : 0;
      const uint64_t bytes = rep ? rep->bytes_read : 0;
      rep = doc->stream->close(opt);
      if (rep) {
        // One rate for the whole request (the append and the close that flushed its tail), not the close's.
        rep->tokens_added += appended;
        rep->bytes_read += bytes;
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        rep->tokens_per_second = seconds > 0.0 ? static_cast<double>(rep->tokens_added) / seconds : 0.0;
      }
    }
    doc->appending = false;
    // The next append of this client may come the moment it reads the answer: free the document first.
    write.unlock();
    slot.reset();
    if (!rep) return respond_error(ex, rep.error());
    metrics_->ingested.Increment(static_cast<double>(rep->tokens_added));
    metrics_->ingest_rate.Set(rep->tokens_per_second);
    json out = document_json(engine, *doc);
    out["appended_tokens"] = rep->tokens_added;
    out["appended_bytes"] = rep->bytes_read;
    out["replaced_utf8_bytes"] = rep->replaced_bytes;
    out["tokens_per_second"] = rep->tokens_per_second;
    return respond_json(ex, 200, out);
  }
  // /v1/documents/{id}/ask
  if (!need("POST")) return;
  auto body = parse_json_body(ex, options_.max_body_bytes);
  if (!body) return;
  const auto q = body->find("question");
  if (q == body->end() || !q->is_string()) return respond_error(ex, 400, "'question' must be a string", "invalid_request_error", "bad_field");
  AskOptions opt;
  try {
    auto num = [&](const char* k) -> std::optional<double> {
      const auto it = body->find(k);
      if (it == body->end() || it->is_null()) return std::nullopt;
      if (!it->is_number()) throw Exception(errc::invalid_argument, std::string("'") + k + "' must be a number");
      return it->get<double>();
    };
    if (auto v = num("max_tokens")) opt.sampling.max_tokens = static_cast<int32_t>(std::clamp(*v, -1.0, 1e7));
    if (auto v = num("temperature")) opt.sampling.temperature = static_cast<float>(*v);
    if (auto v = num("top_p")) opt.sampling.top_p = static_cast<float>(*v);
    if (const auto it = body->find("seed"); it != body->end() && !it->is_null()) {
      if (!it->is_number_integer()) throw Exception(errc::invalid_argument, "'seed' must be an integer");
      opt.sampling.seed = it->is_number_unsigned() ? it->get<uint64_t>() : static_cast<uint64_t>(it->get<int64_t>());
    }
    if (auto v = num("budget")) opt.budget = static_cast<int64_t>(std::clamp(*v, -1.0, 1e12));
  } catch (const Exception& e) {
    return respond_error(ex, e.error());
  }
  const auto s = body->find("stream");
  if (s != body->end() && !s->is_boolean() && !s->is_null()) return respond_error(ex, 400, "'stream' must be true or false", "invalid_request_error", "bad_field");
  const bool stream = s != body->end() && s->is_boolean() && s->get<bool>();
  Tracked tracked(mutex_, running_);
  auto slot = asks_.acquire([&] { return ex.client_gone(); });
  if (!slot) return busy(ex, "all answer slots are taken");
  opt.cancel = tracked.handle();
  opt.on_progress = [&](const Progress&) {
    if (ex.client_gone()) opt.cancel.cancel("the client went away");
  };
  if (stream) {
    opt.on_token = [&ex](std::string_view piece) {
      return ex.send_event(api::dump(json{{"object", "document.answer.chunk"}, {"delta", piece}}));
    };
  }
  auto a = engine.ask(doc->dir, q->get<std::string>(), opt);
  slot.reset();
  if (!a) {
    if (!stream || ex.status() == 0) return respond_error(ex, a.error());
    ex.send_event(openai::error_response(a.error()).body);
    ex.send_event("[DONE]");
    return ex.end_events();
  }
  metrics_->asks.Increment();
  if (a->timings_ms.count("ttft") && a->timings_ms.at("ttft") >= 0) metrics_->ttft.Observe(a->timings_ms.at("ttft") / 1000.0);
  json out = {{"id", doc->id},
              {"object", "document.answer"},
              {"answer", a->text},
              {"finish_reason", a->finish_reason},
              {"recalled", {{"spans", api::spans_json(a->spans)}, {"tokens", a->recalled}}},
              {"compressed", a->compressed},
              {"context_tokens", a->context_tokens},
              {"l_R", a->layer},
              {"usage",
               {{"prompt_tokens", a->prompt_tokens},
                {"completion_tokens", a->generated_tokens},
                {"total_tokens", a->prompt_tokens + a->generated_tokens}}},
              {"timings_ms", a->timings_ms}};
  if (!stream) return respond_json(ex, 200, out);
  ex.send_event(api::dump(out));
  ex.send_event("[DONE]");
  ex.end_events();
}

}  // namespace ilre::daemon
