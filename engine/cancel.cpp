#include "engine/cancel.h"

namespace ilre::engine {

uint64_t CancelToken::on_cancel(std::function<void()> fn) const {
  if (!state_) return 0;
  {
    std::lock_guard lock(state_->mutex);
    if (!state_->cancelled.load(std::memory_order_relaxed)) {
      uint64_t id = state_->next_id++;
      state_->callbacks.emplace_back(id, std::move(fn));
      return id;
    }
  }
  fn();  // already cancelled: run now, outside the lock so fn may use the token
  return 0;
}

void CancelToken::remove_callback(uint64_t id) const {
  if (!state_ || id == 0) return;
  std::lock_guard lock(state_->mutex);
  auto& cbs = state_->callbacks;
  for (auto it = cbs.begin(); it != cbs.end(); ++it) {
    if (it->first == id) {
      cbs.erase(it);
      return;
    }
  }
}

bool CancelSource::cancel(Error reason) {
  std::vector<std::pair<uint64_t, std::function<void()>>> callbacks;
  {
    std::lock_guard lock(state_->mutex);
    if (state_->cancelled.load(std::memory_order_relaxed)) return false;
    state_->reason = std::move(reason);
    state_->cancelled.store(true, std::memory_order_release);
    callbacks.swap(state_->callbacks);
  }
  // Outside the lock: a callback may cancel other sources or register on this token.
  for (auto& [id, fn] : callbacks) fn();
  return true;
}

}  // namespace ilre::engine
