// Ctrl-C (and SIGTERM) as a cancel: long commands stop cleanly, leaving stores and result files consistent.
#pragma once

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <thread>

#include "ilre/engine.h"

namespace ilre::cli {

// The signal that arrived, set from the handler (only async-signal-safe work there); a watcher thread turns
// it into a cancel.
inline std::atomic<int> g_signal{0};

inline void on_signal(int sig) { g_signal.store(sig); }

// Cancels `handle` on the first Ctrl-C or SIGTERM; a second one kills the process the default way. A
// command that has not ended `grace` after the cancel exits by itself with 128 + the signal: one blocked
// where a cancel cannot reach it (writing to a pipe nobody reads, say) would otherwise ignore a
// supervisor's single SIGTERM for ever. Exiting there loses nothing a kill -9 would not: stores and batch
// journals are written atomically and resume.
class InterruptGuard {
 public:
  explicit InterruptGuard(CancelHandle handle, std::chrono::milliseconds grace = std::chrono::seconds(10))
      : handle_(std::move(handle)) {
    g_signal.store(0);
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESETHAND;
    sigaction(SIGINT, &sa, &old_);
    sigaction(SIGTERM, &sa, &old_term_);
    watcher_ = std::thread([this, grace] { watch(grace); });
  }
  ~InterruptGuard() {
    stop_.store(true);
    watcher_.join();
    sigaction(SIGINT, &old_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }

 private:
  void watch(std::chrono::milliseconds grace) {
    using Clock = std::chrono::steady_clock;
    Clock::time_point deadline{};
    bool cancelled = false;
    while (!stop_.load()) {
      if (const int sig = g_signal.load(); sig != 0) {
        if (!cancelled) {
          handle_.cancel("interrupted");
          cancelled = true;
          deadline = Clock::now() + grace;
        } else if (Clock::now() >= deadline) {
          static constexpr char kMsg[] = "ilre: still running after the interrupt's grace period; exiting now\n";
          [[maybe_unused]] const ssize_t n = ::write(STDERR_FILENO, kMsg, sizeof(kMsg) - 1);
          std::_Exit(128 + sig);
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }

  CancelHandle handle_;
  struct sigaction old_ {};
  struct sigaction old_term_ {};
  std::atomic<bool> stop_{false};
  std::thread watcher_;
};

}  // namespace ilre::cli
