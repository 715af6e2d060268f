// Cancellation: one CancelSource, any number of CancelTokens.
//
// Long stages call token.check() between units of work (between chunks, between layers); the check is one
// atomic load so it can sit inside a per-chunk loop. The first cancel() wins and its Error is what every
// token reports, so a user abort, a deadline and a failing sibling stage are told apart by their message.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "ilre/error.h"

namespace ilre::engine {

namespace detail {
struct CancelState {
  std::atomic<bool> cancelled{false};
  std::mutex mutex;
  Error reason;  // written once under `mutex` before `cancelled` is set; read-only afterwards
  std::vector<std::pair<uint64_t, std::function<void()>>> callbacks;
  uint64_t next_id = 1;
};
}  // namespace detail

class CancelToken {
 public:
  // A default token is never cancelled (for stages run outside a pipeline, e.g. in unit tests).
  CancelToken() = default;

  bool cancelled() const noexcept { return state_ && state_->cancelled.load(std::memory_order_acquire); }

  // The cancel reason (errc::cancelled for user aborts and deadlines) once cancelled, success before.
  Result<void> check() const {
    if (!cancelled()) return {};
    return tl::unexpected<Error>(state_->reason);
  }

  std::optional<Error> reason() const {
    if (!cancelled()) return std::nullopt;
    return state_->reason;
  }

  // Runs fn once when the source is cancelled, on the cancelling thread (at once, on this thread, if it
  // already is). Returns an id for remove_callback; 0 for a default token. fn must not throw, and must not
  // own the token's source (that would be a reference cycle).
  uint64_t on_cancel(std::function<void()> fn) const;
  void remove_callback(uint64_t id) const;

 private:
  friend class CancelSource;
  explicit CancelToken(std::shared_ptr<detail::CancelState> state) : state_(std::move(state)) {}
  std::shared_ptr<detail::CancelState> state_;
};

class CancelSource {
 public:
  CancelSource() : state_(std::make_shared<detail::CancelState>()) {}

  CancelToken token() const { return CancelToken(state_); }
  bool cancelled() const noexcept { return state_->cancelled.load(std::memory_order_acquire); }

  // First call wins and returns true; callbacks run on this thread before it returns.
  bool cancel(Error reason = Error{errc::cancelled, "cancelled"});

 private:
  std::shared_ptr<detail::CancelState> state_;
};

}  // namespace ilre::engine
