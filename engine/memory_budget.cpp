#include "engine/memory_budget.h"

#include <utility>

namespace ilre::engine {

void Reservation::reset() {
  if (budget_) budget_->release(bytes_);
  budget_ = nullptr;
  bytes_ = 0;
}

bool MemoryBudget::try_take(size_t bytes) {
  size_t cur = used_.load(std::memory_order_relaxed);
  while (bytes <= limit_ && cur <= limit_ - bytes) {
    if (used_.compare_exchange_weak(cur, cur + bytes, std::memory_order_acq_rel)) {
      size_t hw = high_water_.load(std::memory_order_relaxed);
      while (cur + bytes > hw && !high_water_.compare_exchange_weak(hw, cur + bytes, std::memory_order_relaxed)) {
      }
      return true;
    }
  }
  return false;
}

std::optional<Reservation> MemoryBudget::try_acquire(size_t bytes, std::function<void()> waker) {
  if (try_take(bytes)) return Reservation(this, bytes);
  std::lock_guard lock(mutex_);
  // A release either finished before we took the lock (the retry sees its bytes) or takes the lock after
  // us (it sees our waker): no wake-up is lost.
  if (try_take(bytes)) return Reservation(this, bytes);
  if (waker) waiters_.push_back(std::move(waker));
  return std::nullopt;
}

void MemoryBudget::release(size_t bytes) {
  used_.fetch_sub(bytes, std::memory_order_acq_rel);
  std::vector<std::function<void()>> wake;
  {
    std::lock_guard lock(mutex_);
    wake.swap(waiters_);
  }
  for (auto& w : wake) w();
}

size_t MemoryBudget::waiters() const {
  std::lock_guard lock(mutex_);
  return waiters_.size();
}

}  // namespace ilre::engine
