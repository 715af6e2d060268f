#include "model/kernels/compute_pool.h"

#include <algorithm>
#include <mutex>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace ilre::model {
namespace {

inline void cpu_relax() {
#if defined(__x86_64__)
  _mm_pause();
#endif
}

// Spins this many rounds (~100 us) before blocking: long enough to bridge the gap between consecutive
// kernels of one forward pass, short enough that a descheduled partner (another pipeline stage, another
// process) is waited for on a futex instead of burning the core it needs.
constexpr int kSpinRounds = 4000;

}  // namespace

ComputePool::ComputePool(int n_threads) {
  if (n_threads <= 0) n_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  n_threads_ = n_threads;
  workers_.reserve(static_cast<size_t>(n_threads - 1));
  for (int i = 1; i < n_threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ComputePool::~ComputePool() {
  stop_.store(true, std::memory_order_release);
  generation_.fetch_add(1, std::memory_order_acq_rel);
  generation_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ComputePool::worker_loop(int ith) {
  uint64_t seen = 0;
  for (;;) {
    uint64_t gen = generation_.load(std::memory_order_acquire);
    for (int spin = 0; gen == seen && spin < kSpinRounds; ++spin) {
      cpu_relax();
      gen = generation_.load(std::memory_order_acquire);
    }
    if (gen == seen) {
      generation_.wait(seen, std::memory_order_acquire);
      continue;
    }
    seen = gen;
    if (stop_.load(std::memory_order_acquire)) return;
    try {
      (*job_)(ith, n_threads_);
    } catch (...) {
      bool expected = false;
      if (has_error_.compare_exchange_strong(expected, true)) error_ = std::current_exception();
    }
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) pending_.notify_one();
  }
}

void ComputePool::run(const std::function<void(int, int)>& fn) {
  if (n_threads_ == 1) {
    fn(0, 1);
    return;
  }
  const std::lock_guard<std::mutex> lock(job_mutex_);
  job_ = &fn;
  has_error_.store(false, std::memory_order_relaxed);
  error_ = nullptr;
  pending_.store(n_threads_ - 1, std::memory_order_release);
  generation_.fetch_add(1, std::memory_order_acq_rel);
  generation_.notify_all();
  std::exception_ptr own_error;
  try {
    fn(0, n_threads_);
  } catch (...) {
    own_error = std::current_exception();
  }
  for (int spin = 0; spin < kSpinRounds && pending_.load(std::memory_order_acquire) != 0; ++spin) cpu_relax();
  for (int left = pending_.load(std::memory_order_acquire); left != 0; left = pending_.load(std::memory_order_acquire)) {
    pending_.wait(left, std::memory_order_acquire);
  }
  job_ = nullptr;
  if (own_error) std::rethrow_exception(own_error);
  if (has_error_.load(std::memory_order_acquire)) std::rethrow_exception(error_);
}

void ComputePool::parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  if (n_threads_ == 1 || n <= grain) {
    fn(0, n);
    return;
  }
  // Pieces a few times smaller than an even split let a thread that finishes early take more work.
  const int64_t piece = std::max<int64_t>(grain, n / (static_cast<int64_t>(n_threads_) * 4));
  std::atomic<int64_t> next{0};
  run([&](int, int) {
    for (;;) {
      const int64_t begin = next.fetch_add(piece, std::memory_order_relaxed);
      if (begin >= n) return;
      fn(begin, std::min(n, begin + piece));
    }
  });
}

}  // namespace ilre::model
