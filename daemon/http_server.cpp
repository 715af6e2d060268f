#include "daemon/http_server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <limits>
#include <cstring>
#include <thread>

namespace ilre::daemon {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using Clock = std::chrono::steady_clock;

// A connected socket as Beast's SyncReadStream/SyncWriteStream, every call bounded by a deadline.
class TimedSocket {
 public:
  TimedSocket(int fd, const std::atomic<bool>& stopping) : fd_(fd), stopping_(stopping) {}

  void set_deadline(Clock::time_point t) { deadline_ = t; }

  // Waits for input until the deadline; with abort_on_stop also gives up when the server stops.
  bool wait_readable(Clock::time_point deadline, bool abort_on_stop) {
    for (;;) {
      if (abort_on_stop && stopping_.load()) return false;
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      const int r = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 250)));
      if (r > 0) return true;
      if (r < 0 && errno != EINTR) return false;
    }
  }

  bool peer_closed() const {
    pollfd p{fd_, POLLRDHUP, 0};
    return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
  }

  template <class MutableBufferSequence>
  size_t read_some(const MutableBufferSequence& buffers) {
    beast::error_code ec;
    const size_t n = read_some(buffers, ec);
    if (ec) throw beast::system_error{ec};
    return n;
  }

  template <class MutableBufferSequence>
  size_t read_some(const MutableBufferSequence& buffers, beast::error_code& ec) {
    ec = {};
    net::mutable_buffer target;
    for (auto it = net::buffer_sequence_begin(buffers); it != net::buffer_sequence_end(buffers); ++it) {
      net::mutable_buffer b = *it;
      if (b.size() > 0) {
        target = b;
        break;
      }
    }
    if (target.size() == 0) return 0;
    if (!wait_readable(deadline_, false)) {
      ec = beast::error::timeout;
      return 0;
    }
    for (;;) {
      const ssize_t n = ::recv(fd_, target.data(), target.size(), 0);
      if (n > 0) return static_cast<size_t>(n);
      if (n == 0) {
        ec = net::error::eof;
        return 0;
      }
      if (errno == EINTR) continue;
      ec = beast::error_code(errno, boost::system::system_category());
      return 0;
    }
  }

  template <class ConstBufferSequence>
  size_t write_some(const ConstBufferSequence& buffers) {
    beast::error_code ec;
    const size_t n = write_some(buffers, ec);
    if (ec) throw beast::system_error{ec};
    return n;
  }

  template <class ConstBufferSequence>
  size_t write_some(const ConstBufferSequence& buffers, beast::error_code& ec) {
    ec = {};
    iovec iov[16];
    int n_iov = 0;
    for (auto it = net::buffer_sequence_begin(buffers); it != net::buffer_sequence_end(buffers) && n_iov < 16; ++it) {
      net::const_buffer b = *it;
      if (b.size() == 0) continue;
      iov[n_iov].iov_base = const_cast<void*>(b.data());
      iov[n_iov].iov_len = b.size();
      ++n_iov;
    }
    if (n_iov == 0) return 0;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - Clock::now()).count();
      if (left <= 0) {
        ec = beast::error::timeout;
        return 0;
      }
      pollfd p{fd_, POLLOUT, 0};
      const int r = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 250)));
      if (r < 0 && errno != EINTR) {
        ec = beast::error_code(errno, boost::system::system_category());
        return 0;
      }
      if (r <= 0) continue;
      msghdr msg{};
      msg.msg_iov = iov;
      msg.msg_iovlen = static_cast<size_t>(n_iov);
      const ssize_t n = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
      if (n >= 0) return static_cast<size_t>(n);
      if (errno == EINTR || errno == EAGAIN) continue;
      ec = beast::error_code(errno, boost::system::system_category());
      return 0;
    }
  }

 private:
  int fd_;
  const std::atomic<bool>& stopping_;
  Clock::time_point deadline_ = Clock::now();
};

using Parser = http::request_parser<http::buffer_body>;

class ExchangeImpl final : public Exchange {
 public:
  ExchangeImpl(TimedSocket& sock, beast::flat_buffer& buffer, Parser& parser, std::string remote, const ServerOptions& options)
      : sock_(sock), buffer_(buffer), parser_(parser), remote_(std::move(remote)), options_(options) {
    const auto& req = parser_.get();
    method_ = std::string(req.method_string());
    const std::string_view target(req.target().data(), req.target().size());
    const size_t q = target.find('?');
    path_ = std::string(target.substr(0, q));
    if (q != std::string_view::npos) parse_query(target.substr(q + 1));
  }

  const std::string& method() const override { return method_; }
  const std::string& path() const override { return path_; }
  std::optional<std::string> query(std::string_view key) const override {
    const auto it = query_.find(std::string(key));
    if (it == query_.end()) return std::nullopt;
    return it->second;
  }
  std::optional<std::string> header(std::string_view name) const override {
    const auto& req = parser_.get();
    const auto it = req.find(beast::string_view(name.data(), name.size()));
    if (it == req.end()) return std::nullopt;
    return std::string(it->value().data(), it->value().size());
  }
  std::string remote() const override { return remote_; }

  Result<std::string> read_body(uint64_t limit) override {
    if (const auto len = parser_.content_length(); len && *len > limit) {
      return make_error(errc::out_of_range, "the body of " + std::to_string(*len) + " bytes is over the limit of " +
                                                std::to_string(limit) + " bytes");
    }
    std::string body;
    char piece[64 << 10];
    for (;;) {
      auto n = read_body_some(piece, sizeof(piece), options_.idle_timeout);
      if (!n) return tl::unexpected(n.error());
      if (*n == 0) return body;
      if (*n < 0) continue;
      if (body.size() + static_cast<uint64_t>(*n) > limit) {
        return make_error(errc::out_of_range, "the body is over the limit of " + std::to_string(limit) + " bytes");
      }
      body.append(piece, static_cast<size_t>(*n));
    }
  }

  Result<int64_t> read_body_some(char* out, int64_t capacity, std::chrono::milliseconds wait) override {
    if (parser_.is_done()) return 0;
    if (!continued_) {
      // A client that asked to wait (curl does for large bodies) is told to send now.
      continued_ = true;
      const auto it = parser_.get().find(http::field::expect);
      if (it != parser_.get().end() && beast::iequals(it->value(), "100-continue")) {
        static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
        sock_.set_deadline(Clock::now() + options_.write_timeout);
        beast::error_code wec;
        net::write(sock_, net::buffer(kContinue.data(), kContinue.size()), wec);
      }
    }
    const auto now = Clock::now();
    if (last_data_ == Clock::time_point{}) last_data_ = now;
    auto& body = parser_.get().body();
    body.data = out;
    body.size = static_cast<size_t>(capacity);
    sock_.set_deadline(now + wait);
    beast::error_code ec;
    http::read_some(sock_, buffer_, parser_, ec);
    if (ec == http::error::need_buffer) ec = {};
    const auto n = static_cast<int64_t>(static_cast<size_t>(capacity) - body.size);
    body.data = nullptr;
    body.size = 0;
    if (n > 0) last_data_ = Clock::now();
    if (ec == beast::error::timeout && n == 0) {
      if (Clock::now() - last_data_ > options_.idle_timeout) {
        broken_ = true;
        return make_error(errc::io_failed, "the client sent nothing for " + std::to_string(options_.idle_timeout.count()) +
                                               " ms in the middle of the body");
      }
      return -1;
    }
    if (ec && ec != beast::error::timeout) {
      broken_ = true;
      return make_error(errc::io_failed, "the upload broke off: " + ec.message());
    }
    if (n == 0) return parser_.is_done() ? 0 : -1;
    return n;
  }

  bool client_gone() override { return broken_ || sock_.peer_closed(); }

  void respond(int status, std::string body, std::string_view content_type,
               const std::vector<std::pair<std::string, std::string>>& headers) override {
    if (responded_) return;
    responded_ = true;
    status_ = status;
    http::response<http::string_body> res{static_cast<http::status>(status), parser_.get().version()};
    res.set(http::field::server, "ilre");
    res.set(http::field::content_type, beast::string_view(content_type.data(), content_type.size()));
    for (const auto& [k, v] : headers) res.set(k, v);
    // A body the handler did not read would have to be drained first; closing is cheaper and safe.
    res.keep_alive(keep_alive());
    res.body() = std::move(body);
    res.prepare_payload();
    sock_.set_deadline(Clock::now() + options_.write_timeout);
    beast::error_code ec;
    if (parser_.get().method() == http::verb::head) {  // the length of what GET would send, no content
      http::response_serializer<http::string_body> sr{res};
      bytes_ = http::write_header(sock_, sr, ec);
    } else {
      bytes_ = http::write(sock_, res, ec);
    }
    if (ec) broken_ = true;
  }

  bool send_event(std::string_view data) override {
    if (broken_) return false;
    beast::error_code ec;
    sock_.set_deadline(Clock::now() + options_.write_timeout);
    if (!events_) {
      events_ = true;
      responded_ = true;
      status_ = 200;
      http::response<http::empty_body> res{http::status::ok, parser_.get().version()};
      res.set(http::field::server, "ilre");
      res.set(http::field::content_type, "text/event-stream");
      res.set(http::field::cache_control, "no-cache");
      // HTTP/1.0 has no chunked encoding: the events are sent bare and the end is the connection's close.
      legacy_ = parser_.get().version() < 11;
      res.keep_alive(keep_alive() && !legacy_);
      res.chunked(!legacy_);
      http::response_serializer<http::empty_body> sr{res};
      bytes_ += http::write_header(sock_, sr, ec);
      if (ec) {
        broken_ = true;
        return false;
      }
    }
    std::string frame;
    frame.reserve(data.size() + 8);
    frame.append("data: ").append(data).append("\n\n");
    bytes_ += legacy_ ? net::write(sock_, net::buffer(frame), ec) : net::write(sock_, http::make_chunk(net::buffer(frame)), ec);
    if (ec) broken_ = true;
    return !broken_;
  }

  void end_events() override {
    if (!events_ || broken_) return;
    if (legacy_) {
      broken_ = true;  // not broken, but done: only closing the connection ends an HTTP/1.0 stream
      return;
    }
    beast::error_code ec;
    sock_.set_deadline(Clock::now() + options_.write_timeout);
    bytes_ += net::write(sock_, http::make_chunk_last(), ec);
    if (ec) broken_ = true;
  }

  int status() const override { return status_; }
  uint64_t bytes_sent() const override { return bytes_; }
  bool responded() const { return responded_; }
  bool keep_alive() const { return !broken_ && parser_.keep_alive() && parser_.is_done(); }
  bool broken() const { return broken_; }

 private:
  void parse_query(std::string_view q) {
    while (!q.empty()) {
      const size_t amp = q.find('&');
      const std::string_view kv = q.substr(0, amp);
      const size_t eq = kv.find('=');
      query_[std::string(kv.substr(0, eq))] = eq == std::string_view::npos ? "" : std::string(kv.substr(eq + 1));
      if (amp == std::string_view::npos) break;
      q.remove_prefix(amp + 1);
    }
  }

  TimedSocket& sock_;
  beast::flat_buffer& buffer_;
  Parser& parser_;
  std::string remote_;
  const ServerOptions& options_;
  std::string method_, path_;
  std::map<std::string, std::string> query_;
  Clock::time_point last_data_{};
  bool responded_ = false;
  bool events_ = false;
  bool legacy_ = false;
  bool broken_ = false;
  bool continued_ = false;
  int status_ = 0;
  uint64_t bytes_ = 0;
};

// A fixed answer written before any request is parsed (too many connections, a head that is too large).
void write_raw(int fd, int status, std::string_view reason, std::string_view message) {
  const std::string body = "{\"error\":{\"message\":\"" + std::string(message) + "\",\"type\":\"server_error\",\"code\":null}}";
  std::string text = "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) +
                     "\r\nContent-Type: application/json\r\nConnection: close\r\n";
  if (status == 503) text += "Retry-After: 1\r\n";
  text += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  (void)::send(fd, text.data(), text.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
}

// Closes without losing the last response: input the client is still sending would make the kernel answer
// with a reset that can discard the response before the client reads it, so half-close and drain first.
void lingering_close(int fd) {
  ::shutdown(fd, SHUT_WR);
  char sink[16 << 10];
  const auto until = Clock::now() + std::chrono::milliseconds(500);
  size_t drained = 0;
  while (Clock::now() < until && drained < (4u << 20)) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    const ssize_t n = ::recv(fd, sink, sizeof(sink), 0);
    if (n <= 0) break;
    drained += static_cast<size_t>(n);
  }
}

}  // namespace

bool secrets_equal(std::string_view a, std::string_view b) noexcept {
  // Compares every byte of the longer string so the time does not depend on where they differ.
  const size_t n = std::max(a.size(), b.size());
  unsigned diff = static_cast<unsigned>(a.size() != b.size());
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned>(x ^ y);
  }
  return diff == 0;
}

HttpServer::HttpServer(ServerOptions options, Handler handler) : options_(std::move(options)), handler_(std::move(handler)) {}

HttpServer::~HttpServer() {
  stop();
  wait_connections(std::chrono::milliseconds(5000));
  if (listen_fd_ >= 0) ::close(listen_fd_);
}

Result<void> HttpServer::listen() {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(options_.port);
  if (const int r = ::getaddrinfo(options_.host.c_str(), port.c_str(), &hints, &found); r != 0) {
    return make_error(errc::invalid_argument, "cannot resolve --host '" + options_.host + "': " + ::gai_strerror(r));
  }
  std::string last_error = "no address";
  for (addrinfo* a = found; a; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, 128) == 0) {
      listen_fd_ = fd;
      sockaddr_storage bound{};
      socklen_t len = sizeof(bound);
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
      port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                                : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
      break;
    }
    last_error = std::strerror(errno);
    ::close(fd);
  }
  ::freeaddrinfo(found);
  if (listen_fd_ < 0) {
    return make_error(errc::io_failed, "cannot listen on " + options_.host + ":" + port + ": " + last_error);
  }
  return {};
}

uint16_t HttpServer::port() const { return port_; }

void HttpServer::run() {
  while (!stopping_.load()) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 250) <= 0) continue;
    sockaddr_storage peer{};
    socklen_t len = sizeof(peer);
    const int fd = ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC);
    if (fd < 0) continue;
    char host[INET6_ADDRSTRLEN] = "?";
    if (peer.ss_family == AF_INET) ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&peer)->sin_addr, host, sizeof(host));
    if (peer.ss_family == AF_INET6) ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&peer)->sin6_addr, host, sizeof(host));
    if (active_.load() >= options_.max_connections) {
      write_raw(fd, 503, "Service Unavailable", "too many connections");
      ::close(fd);
      continue;
    }
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    active_.fetch_add(1);
    std::thread([this, fd, remote = std::string(host)] {
      serve_connection(fd, remote);
      lingering_close(fd);
      ::close(fd);
      std::lock_guard<std::mutex> lock(mutex_);
      active_.fetch_sub(1);
      idle_.notify_all();
    }).detach();
  }
}

void HttpServer::stop() { stopping_.store(true); }

bool HttpServer::wait_connections(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  return idle_.wait_for(lock, timeout, [&] { return active_.load() == 0; });
}

void HttpServer::serve_connection(int fd, std::string remote) {
  TimedSocket sock(fd, stopping_);
  beast::flat_buffer buffer;
  for (;;) {
    if (buffer.size() == 0 && !sock.wait_readable(Clock::now() + options_.idle_timeout, true)) return;
    Parser parser;
    parser.header_limit(static_cast<uint32_t>(options_.max_header_bytes));
    // Each handler enforces its own limit (an append may be any size). Not boost::none: Boost 1.74 compares
    // a Content-Length against an empty optional as "over the limit".
    parser.body_limit(std::numeric_limits<std::uint64_t>::max());
    sock.set_deadline(Clock::now() + options_.header_timeout);
    beast::error_code ec;
    http::read_header(sock, buffer, parser, ec);
    if (ec == http::error::header_limit) {
      write_raw(fd, 431, "Request Header Fields Too Large", "the request head is over the limit");
      return;
    }
    if (ec == beast::error::timeout) {
      write_raw(fd, 408, "Request Timeout", "the request head did not arrive in time");
      return;
    }
    if (ec == net::error::eof || ec == http::error::end_of_stream) return;
    if (ec) {
      spdlog::debug("closing {}: {}", remote, ec.message());
      write_raw(fd, 400, "Bad Request", "malformed HTTP request");
      return;
    }
    ExchangeImpl ex(sock, buffer, parser, remote, options_);
    handler_(ex);
    if (!ex.responded()) ex.respond(500, R"({"error":{"message":"no response","type":"server_error","code":null}})", "application/json", {});
    if (!ex.keep_alive()) return;
  }
}

}  // namespace ilre::daemon
