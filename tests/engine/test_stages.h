// Small stages and a counted message for the engine tests.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "engine/pipeline.h"

namespace ilre::engine::test {

// How many messages exist right now and at most, so tests can prove bounds and destruction.
struct Liveness {
  std::atomic<int64_t> alive{0};
  std::atomic<int64_t> max_alive{0};
  std::atomic<int64_t> destroyed{0};
};

// Move-only message with a sequence number; counts itself in a Liveness while it owns its payload.
class Counted {
 public:
  Counted(int64_t seq, Liveness* live, Reservation reservation = {})
      : seq(seq), reservation(std::move(reservation)), live_(live) {
    if (live_) {
      int64_t n = live_->alive.fetch_add(1) + 1;
      int64_t m = live_->max_alive.load();
      while (n > m && !live_->max_alive.compare_exchange_weak(m, n)) {
      }
    }
  }
  Counted(Counted&& o) noexcept : seq(o.seq), reservation(std::move(o.reservation)), live_(std::exchange(o.live_, nullptr)) {}
  Counted& operator=(Counted&& o) noexcept {
    if (this != &o) {
      release();
      seq = o.seq;
      reservation = std::move(o.reservation);
      live_ = std::exchange(o.live_, nullptr);
    }
    return *this;
  }
  Counted(const Counted&) = delete;
  Counted& operator=(const Counted&) = delete;
  ~Counted() { release(); }

  int64_t seq;
  Reservation reservation;  // memory-budget bytes this message stands for

 private:
  void release() {
    if (live_) {
      live_->alive.fetch_sub(1);
      live_->destroyed.fetch_add(1);
      live_ = nullptr;
    }
  }
  Liveness* live_;
};

// Emits seq 0..count-1 (count < 0: forever), one per produce() step.
struct CountSource {
  using Out = Counted;
  static constexpr std::string_view kName = "src";

  CountSource(int64_t count, Liveness* live = nullptr, std::vector<std::string>* trace = nullptr)
      : count(count), live(live), trace(trace) {}

  Result<bool> produce(Emitter<Out>& out) {
    if (count >= 0 && next >= count) return false;
    if (trace) trace->push_back("src " + std::to_string(next));
    out.emit(Counted(next++, live));
    produced.store(next, std::memory_order_relaxed);
    return count < 0 || next < count;
  }

  int64_t count;
  Liveness* live;
  std::vector<std::string>* trace;
  int64_t next = 0;
  std::atomic<int64_t> produced{0};
};

// Passes messages on with seq + offset; optionally fails or throws at one seq, or works `work` per
// message in 100 us units, checking the cancel token between units.
struct AddStage {
  using In = Counted;
  using Out = Counted;
  static constexpr std::string_view kName = "mid";

  Result<void> start(StageContext& c) {
    ctx = &c;
    return {};
  }
  Result<void> process(In&& msg, Emitter<Out>& out) {
    if (trace) trace->push_back("mid " + std::to_string(msg.seq));
    if (msg.seq == fail_at) return make_error(errc::io_failed, "disk on fire");
    if (msg.seq == throw_at) throw std::runtime_error("thrown at " + std::to_string(msg.seq));
    for (auto t0 = std::chrono::steady_clock::now(); std::chrono::steady_clock::now() - t0 < work;) {
      if (auto c = ctx->check_cancel(); !c) return c;
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    ctx->add_items_in(1);
    ctx->add_items_out(2);
    out.emit(Counted(msg.seq + offset, live));
    return {};
  }

  int64_t offset = 0;
  int64_t fail_at = -1;
  int64_t throw_at = -1;
  std::chrono::microseconds work{0};
  Liveness* live = nullptr;
  std::vector<std::string>* trace = nullptr;
  StageContext* ctx = nullptr;
};

// Records what arrives and whether it arrived in order.
struct CollectSink {
  using In = Counted;
  static constexpr std::string_view kName = "sink";

  Result<void> process(In&& msg) {
    if (trace) trace->push_back("sink " + std::to_string(msg.seq));
    if (msg.seq != expect_next) in_order = false;
    expect_next = msg.seq + 1;
    ++received;
    sum += msg.seq;
    // Busy, not asleep: a sleep on a loaded 2-core machine lasts milliseconds, a spin about what it says.
    for (auto t0 = std::chrono::steady_clock::now(); std::chrono::steady_clock::now() - t0 < delay;) {
    }
    return {};
  }
  Result<void> finish() {
    finished = true;
    if (trace) trace->push_back("sink finish");
    return {};
  }

  int64_t expect_next = 0;
  bool in_order = true;
  int64_t received = 0;
  int64_t sum = 0;
  bool finished = false;
  std::chrono::microseconds delay{0};
  std::vector<std::string>* trace = nullptr;
};

}  // namespace ilre::engine::test
