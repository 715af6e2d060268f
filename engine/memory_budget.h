// MemoryBudget: one byte budget shared by every pipeline of a process (the daemon's KV blocks in flight).
//
// A producing stage reserves the bytes of a message before building it and moves the Reservation into the
// message; the bytes return to the budget when the message (and so the reservation) is destroyed, wherever
// that happens. Acquiring never blocks a thread: try_acquire() fails and remembers a waker, and the stage's
// actor suspends like on a full mailbox until some bytes come back (see Emitter::try_reserve).
#pragma once

#include <atomic>
#include <cstddef>
#include <functional>
#include <mutex>
#include <optional>
#include <vector>

namespace ilre::engine {

class MemoryBudget;

// Move-only claim on bytes of a MemoryBudget. A default or moved-from Reservation holds nothing.
class Reservation {
 public:
  Reservation() = default;
  Reservation(Reservation&& other) noexcept : budget_(other.budget_), bytes_(other.bytes_) {
    other.budget_ = nullptr;
    other.bytes_ = 0;
  }
  Reservation& operator=(Reservation&& other) noexcept {
    if (this != &other) {
      reset();
      budget_ = other.budget_;
      bytes_ = other.bytes_;
      other.budget_ = nullptr;
      other.bytes_ = 0;
    }
    return *this;
  }
  Reservation(const Reservation&) = delete;
  Reservation& operator=(const Reservation&) = delete;
  ~Reservation() { reset(); }

  size_t bytes() const { return bytes_; }
  // Gives the bytes back now.
  void reset();

 private:
  friend class MemoryBudget;
  Reservation(MemoryBudget* budget, size_t bytes) : budget_(budget), bytes_(bytes) {}
  MemoryBudget* budget_ = nullptr;
  size_t bytes_ = 0;
};

// Thread-safe. Must outlive every Reservation taken from it.
class MemoryBudget {
 public:
  explicit MemoryBudget(size_t limit_bytes) : limit_(limit_bytes) {}
  MemoryBudget(const MemoryBudget&) = delete;
  MemoryBudget& operator=(const MemoryBudget&) = delete;

  // A reservation of `bytes` if that many are free now. Otherwise nullopt, and `waker` (if any) is called
  // once, on the releasing thread, after bytes are next given back; callers then retry. A request above
  // limit() can never succeed: check before asking (Emitter::try_reserve reports it as an error).
  std::optional<Reservation> try_acquire(size_t bytes, std::function<void()> waker = {});

  size_t limit() const { return limit_; }
  size_t used() const { return used_.load(std::memory_order_relaxed); }
  size_t high_water() const { return high_water_.load(std::memory_order_relaxed); }
  size_t waiters() const;

 private:
  friend class Reservation;
  bool try_take(size_t bytes);
  void release(size_t bytes);

  const size_t limit_;
  std::atomic<size_t> used_{0};
  std::atomic<size_t> high_water_{0};
  mutable std::mutex mutex_;                    // guards waiters_; taken only on failure and on release
  std::vector<std::function<void()>> waiters_;  // woken all at once: few pipelines wait at a time
};

}  // namespace ilre::engine
