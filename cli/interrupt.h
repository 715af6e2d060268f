// Ctrl-C (and SIGTERM) as a cancel: long commands stop cleanly, leaving stores and result files consistent.
#pragma once

#include <signal.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "ilre/engine.h"

namespace ilre::cli {

// Set from the SIGINT handler (only async-signal-safe work there); a watcher thread turns it into a cancel.
inline std::atomic<bool> g_interrupted{false};

inline void on_sigint(int) { g_interrupted.store(true); }

// Cancels `handle` on the first Ctrl-C or SIGTERM; a second one kills the process the default way.
class InterruptGuard {
 public:
  explicit InterruptGuard(CancelHandle handle) : handle_(std::move(handle)) {
    g_interrupted.store(false);
    struct sigaction sa {};
    sa.sa_handler = on_sigint;
    sa.sa_flags = SA_RESETHAND;
    sigaction(SIGINT, &sa, &old_);
    sigaction(SIGTERM, &sa, &old_term_);
    watcher_ = std::thread([this] {
      while (!stop_.load()) {
        if (g_interrupted.load()) {
          handle_.cancel("interrupted");
          return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    });
  }
  ~InterruptGuard() {
    stop_.store(true);
    watcher_.join();
    sigaction(SIGINT, &old_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }

 private:
  CancelHandle handle_;
  struct sigaction old_ {};
  struct sigaction old_term_ {};
  std::atomic<bool> stop_{false};
  std::thread watcher_;
};

}  // namespace ilre::cli
