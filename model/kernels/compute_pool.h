// Fork-join thread pool for the model's numeric kernels.
//
// The model library knows nothing of actors: a forward pass splits its matrix products across this pool and
// joins before the next operation. Workers spin briefly before sleeping because the gaps between kernels in
// a decode step are microseconds long; a condition-variable wake-up per kernel would dominate small matmuls.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace ilre::model {

class ComputePool {
 public:
  // n_threads <= 0 means one thread per available core.
  explicit ComputePool(int n_threads = 0);
  ~ComputePool();
  ComputePool(const ComputePool&) = delete;
  ComputePool& operator=(const ComputePool&) = delete;

  int size() const { return n_threads_; }

  // Calls fn(thread_index, n_threads) once on every thread of the pool (the caller is thread 0) and returns
  // when all calls have returned. An exception thrown by any call is rethrown here after the join.
  // Callers on different threads (several pipelines sharing one pool) are served one job at a time; fn must
  // not call run() itself.
  void run(const std::function<void(int ith, int nth)>& fn);

  // Splits [0, n) into pieces of at least `grain` items handed out dynamically; fn(begin, end).
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t begin, int64_t end)>& fn);

 private:
  void worker_loop(int ith);

  int n_threads_;
  std::vector<std::thread> workers_;
  const std::function<void(int, int)>* job_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  std::exception_ptr error_;
  std::atomic<bool> has_error_{false};
  std::mutex job_mutex_;  // one job at a time across concurrent callers
};

}  // namespace ilre::model
