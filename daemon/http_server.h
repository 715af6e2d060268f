// The daemon's HTTP/1.1 server: Boost.Beast's parser and serializer over a socket whose every read and
// write has a deadline, one thread per connection (as llama-server), a bounded number of connections.
//
// Why threads and blocking calls: a request's work (an ask, an append) is a blocking library call that
// runs for seconds to minutes, and an append's body is pulled from the socket by the ingest pipeline
// while the connection waits for the library to return. Deadlines come from poll() before each read and
// write, so a slow or silent client is closed after its timeout and never holds a thread forever.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ilre/error.h"

namespace ilre::daemon {

struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8080;            // 0: any free port (tests)
  int64_t max_connections = 64;    // beyond: 503 and close
  int64_t max_header_bytes = 16 << 10;
  std::chrono::milliseconds header_timeout{10'000};     // the whole request head must arrive within it
  std::chrono::milliseconds idle_timeout{30'000};       // keep-alive wait, and the longest pause inside a body
  std::chrono::milliseconds write_timeout{30'000};
};

// One request and its response. Handlers run on the connection's thread.
class Exchange {
 public:
  virtual ~Exchange() = default;
  virtual const std::string& method() const = 0;
  virtual const std::string& path() const = 0;  // without the query string
  virtual std::optional<std::string> query(std::string_view key) const = 0;
  virtual std::optional<std::string> header(std::string_view name) const = 0;
  virtual std::string remote() const = 0;

  // The whole body, at most `limit` bytes: errc::out_of_range (413) beyond, io_failed if the client broke off.
  virtual Result<std::string> read_body(uint64_t limit) = 0;
  // Pulls the body in pieces (chunked or sized): bytes read, 0 at the end, -1 if nothing came within
  // wait; io_failed when the client broke off or stayed silent past the idle timeout.
  virtual Result<int64_t> read_body_some(char* buffer, int64_t capacity, std::chrono::milliseconds wait) = 0;
  // True once the peer has closed or reset the connection (checked without blocking).
  virtual bool client_gone() = 0;

  virtual void respond(int status, std::string body, std::string_view content_type = "application/json",
                       const std::vector<std::pair<std::string, std::string>>& headers = {}) = 0;
  // Server-sent events: the head (200, text/event-stream, chunked), then one event per call. false: the
  // client is gone.
  virtual bool send_event(std::string_view data) = 0;
  virtual void end_events() = 0;

  // What was sent, for the access log and the metrics.
  virtual int status() const = 0;
  virtual uint64_t bytes_sent() const = 0;
};

using Handler = std::function<void(Exchange&)>;

class HttpServer {
 public:
  HttpServer(ServerOptions options, Handler handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and listens; errc::io_failed naming the address when it cannot.
  Result<void> listen();
  uint16_t port() const;
  // Accepts until stop(); returns when the acceptor is closed (connections may still run).
  void run();
  // Stops accepting; idle keep-alive connections close at their next poll (within 250 ms).
  void stop();
  // Waits until every connection thread has ended, at most `timeout`; true if they all did.
  bool wait_connections(std::chrono::milliseconds timeout);
  int64_t connections() const { return active_.load(); }

  // Serves one connected socket on the calling thread until the peer closes it or a timeout ends it; the
  // caller closes fd. run() does this on a thread per connection; the fuzz target drives it through a
  // socketpair.
  void serve_connection(int fd, std::string remote);

 private:

  ServerOptions options_;
  Handler handler_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int64_t> active_{0};
  std::mutex mutex_;
  std::condition_variable idle_;
};

// Constant-time equality of two secrets (an API key): the time depends on the lengths only.
bool secrets_equal(std::string_view a, std::string_view b) noexcept;

}  // namespace ilre::daemon
