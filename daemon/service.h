// The daemon's HTTP API over the library: routing, the key check, admission control, the documents
// endpoints, the OpenAI endpoints (ilre::openai), Prometheus metrics and the access log.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "daemon/documents.h"
#include "daemon/http_server.h"
#include "ilre/engine.h"

namespace ilre::daemon {

struct ServiceOptions {
  std::string api_key;               // empty: no key required
  uint64_t max_body_bytes = 64ull << 20;  // JSON requests (an append's body has no limit)
  int32_t parallel = 2;              // asks and completions at once; as many appends at once besides
  int32_t max_waiting = 8;           // requests waiting for a slot per kind, beyond which 503 + Retry-After
};

// At most `capacity` holders at once and at most `max_waiting` waiting: a daemon at capacity says so
// (503) instead of queueing without bound.
class Slots {
 public:
  Slots(int32_t capacity, int32_t max_waiting) : capacity_(capacity), max_waiting_(max_waiting) {}
  class Guard {
   public:
    explicit Guard(Slots* s) : s_(s) {}
    Guard(Guard&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
    Guard(const Guard&) = delete;
    ~Guard() {
      if (s_) s_->release();
    }

   private:
    Slots* s_;
  };
  // nullopt: too many waiting, or gave_up() turned true while waiting (the client left).
  std::optional<Guard> acquire(const std::function<bool()>& gave_up);
  int32_t busy() const;
  int32_t waiting() const;

 private:
  void release();
  const int32_t capacity_, max_waiting_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  int32_t busy_ = 0, waiting_ = 0;
};

class Service {
 public:
  explicit Service(ServiceOptions options);
  ~Service();

  // Once the model is loaded and the documents listed: until then every path but /health says 503.
  void set_ready(std::shared_ptr<Engine> engine, std::shared_ptr<Documents> documents);
  void handle(Exchange& ex);
  // Cancels every running request (the end of the shutdown grace period).
  void cancel_all();
  int64_t in_flight() const;

  struct Metrics;

 private:
  struct Route;
  void dispatch(Exchange& ex, Route& route);

  ServiceOptions options_;
  mutable std::mutex mutex_;
  std::shared_ptr<Engine> engine_;
  std::shared_ptr<Documents> documents_;
  Slots asks_, ingests_;
  std::unique_ptr<Metrics> metrics_;
  std::set<std::shared_ptr<CancelHandle>> running_;
};

}  // namespace ilre::daemon
