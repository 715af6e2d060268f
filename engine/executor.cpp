#include "engine/executor.h"

#include <algorithm>
#include <thread>
#include <unordered_map>
#include <utility>

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>

namespace ilre::engine {

// Timers live on one dedicated thread with a condition variable rather than asio::steady_timer: a timer
// object may not be cancelled from one thread while a pool thread completes it, and a pending steady_timer
// would keep thread_pool::join() waiting for an hour-long deadline. Deadlines are few (one per pipeline).
struct ThreadPoolExecutor::Impl {
  explicit Impl(int n) : pool(static_cast<std::size_t>(n)) {}

  void timer_loop() {
    std::unique_lock lock(mutex);
    while (!stop) {
      if (timers.empty()) {
        cv.wait(lock);
        continue;
      }
      auto it = timers.begin();
      if (std::chrono::steady_clock::now() < it->first.first) {
        cv.wait_until(lock, it->first.first);
        continue;
      }
      Task task = std::move(it->second);
      due_of.erase(it->first.second);
      timers.erase(it);
      lock.unlock();
      boost::asio::post(pool, std::move(task));
      lock.lock();
    }
  }

  boost::asio::thread_pool pool;
  std::mutex mutex;
  std::condition_variable cv;
  std::map<std::pair<std::chrono::steady_clock::time_point, TimerId>, Task> timers;
  std::unordered_map<TimerId, std::chrono::steady_clock::time_point> due_of;
  TimerId next_id = 1;
  bool stop = false;
  std::thread timer_thread;
};

ThreadPoolExecutor::ThreadPoolExecutor(int n_threads)
    : n_threads_(n_threads > 0 ? n_threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()))),
      impl_(std::make_unique<Impl>(n_threads_)) {
  impl_->timer_thread = std::thread([this] { impl_->timer_loop(); });
}

ThreadPoolExecutor::~ThreadPoolExecutor() {
  {
    std::lock_guard lock(impl_->mutex);
    impl_->stop = true;
  }
  impl_->cv.notify_all();
  impl_->timer_thread.join();
  impl_->pool.stop();
  impl_->pool.join();
}

void ThreadPoolExecutor::post(Task task) { boost::asio::post(impl_->pool, std::move(task)); }

Executor::TimerId ThreadPoolExecutor::post_after(std::chrono::nanoseconds delay, Task task) {
  auto due = std::chrono::steady_clock::now() + delay;
  TimerId id;
  {
    std::lock_guard lock(impl_->mutex);
    id = impl_->next_id++;
    impl_->timers.emplace(std::make_pair(due, id), std::move(task));
    impl_->due_of.emplace(id, due);
  }
  impl_->cv.notify_all();
  return id;
}

void ThreadPoolExecutor::cancel_timer(TimerId id) {
  std::lock_guard lock(impl_->mutex);
  auto it = impl_->due_of.find(id);
  if (it == impl_->due_of.end()) return;
  impl_->timers.erase(std::make_pair(it->second, id));
  impl_->due_of.erase(it);
}

void ManualExecutor::post(Task task) {
  std::lock_guard lock(mutex_);
  queue_.push_back(std::move(task));
}

Executor::TimerId ManualExecutor::post_after(std::chrono::nanoseconds delay, Task task) {
  std::lock_guard lock(mutex_);
  TimerId id = next_timer_++;
  timers_.emplace(std::make_pair(now_ + delay, id), std::move(task));
  return id;
}

void ManualExecutor::cancel_timer(TimerId id) {
  std::lock_guard lock(mutex_);
  for (auto it = timers_.begin(); it != timers_.end(); ++it) {
    if (it->first.second == id) {
      timers_.erase(it);
      return;
    }
  }
}

bool ManualExecutor::run_one() {
  Task task;
  {
    std::lock_guard lock(mutex_);
    if (queue_.empty()) return false;
    task = std::move(queue_.front());
    queue_.pop_front();
  }
  task();
  return true;
}

size_t ManualExecutor::run_until_idle() {
  size_t n = 0;
  while (run_one()) ++n;
  return n;
}

size_t ManualExecutor::run(size_t max_handlers) {
  size_t n = 0;
  while (n < max_handlers && run_one()) ++n;
  return n;
}

void ManualExecutor::advance(std::chrono::nanoseconds delta) {
  std::lock_guard lock(mutex_);
  now_ += delta;
  while (!timers_.empty() && timers_.begin()->first.first <= now_) {
    queue_.push_back(std::move(timers_.begin()->second));
    timers_.erase(timers_.begin());
  }
}

std::chrono::nanoseconds ManualExecutor::now() const {
  std::lock_guard lock(mutex_);
  return now_;
}

size_t ManualExecutor::queued() const {
  std::lock_guard lock(mutex_);
  return queue_.size();
}

}  // namespace ilre::engine
