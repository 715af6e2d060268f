// Executors that run actors: a thread pool for real work and a deterministic single-threaded one for tests.
//
// The engine needs only "run this handler soon" and "run this handler after a delay" (deadlines), so the
// interface is those two operations rather than an Asio executor: the same pipeline code then runs on the
// Asio thread pool and on ManualExecutor, whose FIFO order and virtual clock make actor tests reproducible.
// Actors serialise themselves (one scheduled run at a time, see actor.h), so no strand is needed.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>

namespace ilre::engine {

class Executor {
 public:
  using Task = std::function<void()>;
  using TimerId = uint64_t;  // 0 is never a valid timer

  virtual ~Executor() = default;

  // Thread-safe. Handlers must not throw (actors catch everything from stages).
  virtual void post(Task task) = 0;
  // Thread-safe. Posts `task` once `delay` has elapsed unless cancel_timer() came first.
  virtual TimerId post_after(std::chrono::nanoseconds delay, Task task) = 0;
  // Thread-safe; unknown or already fired ids are ignored.
  virtual void cancel_timer(TimerId id) = 0;

  // Single-threaded executors run handlers on whichever thread drives them: run_one() runs one queued
  // handler on the calling thread and says whether there was one. RunHandle::wait() uses it so the same
  // test body works on both executors. Thread pools return false (their own threads run handlers).
  virtual bool run_one() { return false; }
  virtual bool runs_on_caller() const { return false; }
};

// N threads of a boost::asio::thread_pool, plus one timer thread for post_after. Destroy every RunHandle
// using it before the executor: queued handlers are discarded at destruction.
class ThreadPoolExecutor final : public Executor {
 public:
  // n_threads <= 0 means one per available core.
  explicit ThreadPoolExecutor(int n_threads = 0);
  ~ThreadPoolExecutor() override;
  ThreadPoolExecutor(const ThreadPoolExecutor&) = delete;
  ThreadPoolExecutor& operator=(const ThreadPoolExecutor&) = delete;

  int size() const { return n_threads_; }

  void post(Task task) override;
  TimerId post_after(std::chrono::nanoseconds delay, Task task) override;
  void cancel_timer(TimerId id) override;

 private:
  struct Impl;
  int n_threads_;
  std::unique_ptr<Impl> impl_;
};

// Runs queued handlers one at a time, in FIFO order, on the thread that calls run_one()/run_until_idle().
// Time is virtual: post_after() timers fire only when advance() moves the clock past them, so deadline
// tests are exact and independent of machine load. post() may be called from any thread.
class ManualExecutor final : public Executor {
 public:
  ManualExecutor() = default;
  ManualExecutor(const ManualExecutor&) = delete;
  ManualExecutor& operator=(const ManualExecutor&) = delete;

  void post(Task task) override;
  TimerId post_after(std::chrono::nanoseconds delay, Task task) override;
  void cancel_timer(TimerId id) override;
  bool run_one() override;
  bool runs_on_caller() const override { return true; }

  // Runs handlers, including those they post, until the queue is empty; returns how many ran. Does not
  // advance virtual time.
  size_t run_until_idle();
  // Runs at most max_handlers handlers; returns how many ran.
  size_t run(size_t max_handlers);
  // Moves the virtual clock forward and queues the timers now due, in (due time, creation) order.
  void advance(std::chrono::nanoseconds delta);
  std::chrono::nanoseconds now() const;
  size_t queued() const;

 private:
  mutable std::mutex mutex_;
  std::deque<Task> queue_;
  std::chrono::nanoseconds now_{0};
  std::map<std::pair<std::chrono::nanoseconds, TimerId>, Task> timers_;
  TimerId next_timer_ = 1;
};

}  // namespace ilre::engine
