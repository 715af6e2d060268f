// Mailbox<T>: the bounded, single-producer single-consumer queue between two actors.
//
// Mechanism: boost::lockfree::spsc_queue carries slot indices; the messages themselves live in a fixed
// array of std::optional<T> slots. Why:
//  - Boost 1.74's spsc_queue requires copyable T, and messages are move-only (KV blocks, token vectors);
//    indices are copyable and the slot array keeps the messages in place without a per-message allocation.
//    The consumer moves a message out inside consume_one(), before the queue publishes the freed slot, so
//    the producer never writes a slot that is still being read.
//  - Lock-free, because a mutex holder preempted on a loaded 2-core machine would stall the other side's
//    pool thread for a whole time slice; with atomics neither side ever blocks a thread.
//  - Asio 1.74 has no experimental::channel, and moving to libboost1.81-dev for it would pull a second
//    Boost into a project whose other parts build against Debian's default 1.74.
// The mailbox never blocks. try_push() on a full mailbox returns `full`; the producer then calls
// await_room(), which arms a one-shot wake-up (the producer's actor is notified when the consumer frees a
// slot or anyone aborts). Consumers use try_pop()/await_data() the same way. The lost-wake-up race (the
// other side acts between "I saw full" and "wake me") is closed by a seq_cst store-then-load on each side:
// waiting flag then count for the waiter, count then waiting flag for the other side.
//
// close() is end of stream: the consumer still drains what is queued. abort(error) is failure or cancel:
// both ends see `aborted` at their next call, and the queued messages are destroyed when the second side
// detaches (so a finished pipeline holds no message and no memory-budget reservation).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include <boost/lockfree/spsc_queue.hpp>

#include "ilre/error.h"

namespace ilre::engine {

enum class MailboxStatus {
  ok,
  full,     // try_push: no room; call await_room()
  empty,    // try_pop: nothing queued yet; call await_data()
  closed,   // try_push: already closed; try_pop: closed and fully drained (end of stream)
  aborted,  // either side: aborted; see error()
};

// Queue depth as metrics see it; shared with the consumer stage's counters.
struct QueueGauge {
  std::atomic<uint64_t> depth{0};
  std::atomic<uint64_t> high_water{0};
};

template <class T>
class Mailbox {
  // A throwing move would lose a message half-way through a slot transfer.
  static_assert(std::is_nothrow_move_constructible_v<T>, "mailbox messages must be nothrow-movable");

 public:
  using Waker = std::function<void()>;

  // capacity >= 1 (0 is treated as 1).
  explicit Mailbox(size_t capacity)
      : capacity_(capacity > 0 ? capacity : 1), slots_(new std::optional<T>[capacity_]), ring_(capacity_), gauge_(&own_gauge_) {}
  Mailbox(const Mailbox&) = delete;
  Mailbox& operator=(const Mailbox&) = delete;
  ~Mailbox() = default;  // any message still queued is destroyed with its slot

  // Wiring, before either side uses the mailbox. on_data wakes the consumer (data, close, abort); on_room
  // wakes the producer (a slot freed, abort). Wakers may be called from any thread and must be cheap.
  void set_wakers(Waker on_data, Waker on_room) {
    on_data_ = std::move(on_data);
    on_room_ = std::move(on_room);
  }
  void set_gauge(QueueGauge* gauge) { gauge_ = gauge ? gauge : &own_gauge_; }

  size_t capacity() const { return capacity_; }
  size_t size() const { return size_.load(std::memory_order_acquire); }
  uint64_t high_water() const { return gauge_->high_water.load(std::memory_order_relaxed); }

  // ---- producer side (one thread at a time) ----

  // Takes the message only on `ok`; on any other status `msg` is left untouched.
  MailboxStatus try_push(T&& msg) {
    int s = state_.load(std::memory_order_acquire);
    if (s == kAborted) return MailboxStatus::aborted;
    if (s == kClosed) return MailboxStatus::closed;
    if (size_.load(std::memory_order_seq_cst) >= capacity_) return MailboxStatus::full;
    // size_ < capacity_ means the consumer finished with slot `tail_` before it released it.
    slots_[tail_].emplace(std::move(msg));
    ring_.push(static_cast<uint32_t>(tail_));
    tail_ = tail_ + 1 == capacity_ ? 0 : tail_ + 1;
    uint64_t n = size_.fetch_add(1, std::memory_order_seq_cst) + 1;
    gauge_->depth.fetch_add(1, std::memory_order_relaxed);
    uint64_t hw = gauge_->high_water.load(std::memory_order_relaxed);
    while (n > hw && !gauge_->high_water.compare_exchange_weak(hw, n, std::memory_order_relaxed)) {
    }
    if (consumer_waiting_.load(std::memory_order_seq_cst) && consumer_waiting_.exchange(false)) wake(on_data_);
    return MailboxStatus::ok;
  }

  bool full() const { return size_.load(std::memory_order_seq_cst) >= capacity_; }
  size_t free_slots() const {
    size_t n = size_.load(std::memory_order_seq_cst);
    return n >= capacity_ ? 0 : capacity_ - n;
  }

  // Arms the producer's one-shot wake-up. Returns true when there is room (or an abort) already, in which
  // case the caller retries at once instead of suspending.
  bool await_room() {
    producer_waiting_.store(true, std::memory_order_seq_cst);
    if (size_.load(std::memory_order_seq_cst) < capacity_ || state_.load(std::memory_order_seq_cst) == kAborted) {
      producer_waiting_.exchange(false);
      return true;
    }
    return false;
  }

  // End of stream. Ignored once aborted.
  void close() {
    int expected = kOpen;
    if (state_.compare_exchange_strong(expected, kClosed, std::memory_order_seq_cst) &&
        consumer_waiting_.exchange(false)) {
      wake(on_data_);
    }
  }

  // ---- consumer side (one thread at a time) ----

  MailboxStatus try_pop(std::optional<T>& out) {
    if (state_.load(std::memory_order_seq_cst) == kAborted) return MailboxStatus::aborted;
    if (size_.load(std::memory_order_seq_cst) == 0) {
      int s = state_.load(std::memory_order_seq_cst);
      if (s == kAborted) return MailboxStatus::aborted;
      if (s == kOpen) return MailboxStatus::empty;
      // Every push happened before close(), so a zero count seen after `closed` is final.
      if (size_.load(std::memory_order_seq_cst) == 0) return MailboxStatus::closed;
    }
    ring_.consume_one([&](uint32_t slot) {
      out.emplace(std::move(*slots_[slot]));
      slots_[slot].reset();
    });
    size_.fetch_sub(1, std::memory_order_seq_cst);
    gauge_->depth.fetch_sub(1, std::memory_order_relaxed);
    if (producer_waiting_.load(std::memory_order_seq_cst) && producer_waiting_.exchange(false)) wake(on_room_);
    return MailboxStatus::ok;
  }

  // Arms the consumer's one-shot wake-up; true when data, close or abort is already there.
  bool await_data() {
    consumer_waiting_.store(true, std::memory_order_seq_cst);
    if (size_.load(std::memory_order_seq_cst) > 0 || state_.load(std::memory_order_seq_cst) != kOpen) {
      consumer_waiting_.exchange(false);
      return true;
    }
    return false;
  }

  // ---- either side, any thread ----

  // First abort wins; later ones (and close) are ignored. Wakes both sides.
  void abort(Error error) {
    if (abort_claimed_.exchange(true)) return;
    error_ = std::move(error);
    state_.store(kAborted, std::memory_order_seq_cst);
    consumer_waiting_.store(false);
    producer_waiting_.store(false);
    wake(on_data_);
    wake(on_room_);
  }
  bool aborted() const { return state_.load(std::memory_order_acquire) == kAborted; }
  bool closed() const { return state_.load(std::memory_order_acquire) == kClosed; }
  // Valid once aborted() is true.
  const Error& error() const { return error_; }

  // Each side calls its detach once when it stops using the mailbox. A side leaving an open mailbox aborts
  // it (the other side must not wait forever); the second side to leave destroys the queued messages.
  void detach_producer() {
    if (state_.load(std::memory_order_acquire) == kOpen) abort(Error{errc::queue_closed, "producer left without closing"});
    leave();
  }
  void detach_consumer() {
    if (!(closed() && size() == 0) && !aborted()) abort(Error{errc::queue_closed, "consumer left before end of stream"});
    leave();
  }

 private:
  enum : int { kOpen = 0, kClosed = 1, kAborted = 2 };

  static void wake(const Waker& w) {
    if (w) w();
  }

  void leave() {
    if (attached_.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    // Both sides are gone: nobody else touches the ring now.
    while (ring_.consume_one([&](uint32_t slot) { slots_[slot].reset(); })) {
      size_.fetch_sub(1, std::memory_order_relaxed);
      gauge_->depth.fetch_sub(1, std::memory_order_relaxed);
    }
  }

  const size_t capacity_;
  std::unique_ptr<std::optional<T>[]> slots_;  // [capacity_], slot i holds the message whose index is queued
  boost::lockfree::spsc_queue<uint32_t> ring_;  // slot indices in FIFO order
  size_t tail_ = 0;                             // next slot the producer fills (producer-only)
  std::atomic<size_t> size_{0};                 // queued messages; the count both wake-up protocols use
  std::atomic<int> state_{kOpen};
  std::atomic<bool> abort_claimed_{false};
  Error error_;
  std::atomic<bool> consumer_waiting_{false};
  std::atomic<bool> producer_waiting_{false};
  std::atomic<int> attached_{2};
  Waker on_data_, on_room_;
  QueueGauge own_gauge_;
  QueueGauge* gauge_;
};

}  // namespace ilre::engine
