#include "engine/mailbox.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "test_stages.h"

namespace ilre::engine {
namespace {

TEST(Mailbox, CapacityAndFifo) {
  Mailbox<int> mb(3);
  EXPECT_EQ(mb.capacity(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(mb.try_push(int(i)), MailboxStatus::ok);
  EXPECT_TRUE(mb.full());
  EXPECT_EQ(mb.try_push(99), MailboxStatus::full);
  EXPECT_EQ(mb.size(), 3u);
  std::optional<int> v;
  for (int round = 0; round < 5; ++round) {  // wrap around the ring several times
    for (int i = 0; i < 3; ++i) {
      ASSERT_EQ(mb.try_pop(v), MailboxStatus::ok);
      EXPECT_EQ(*v, round * 3 + i);
    }
    EXPECT_EQ(mb.try_pop(v), MailboxStatus::empty);
    for (int i = 0; i < 3; ++i) EXPECT_EQ(mb.try_push((round + 1) * 3 + i), MailboxStatus::ok);
  }
  EXPECT_EQ(mb.high_water(), 3u);
}

TEST(Mailbox, MoveOnlyPayloadsStayWithTheCallerWhenRefused) {
  Mailbox<std::unique_ptr<int>> mb(1);
  auto a = std::make_unique<int>(1);
  auto b = std::make_unique<int>(2);
  EXPECT_EQ(mb.try_push(std::move(a)), MailboxStatus::ok);
  EXPECT_EQ(a, nullptr);
  EXPECT_EQ(mb.try_push(std::move(b)), MailboxStatus::full);
  ASSERT_NE(b, nullptr);  // refused: still ours
  EXPECT_EQ(*b, 2);
  std::optional<std::unique_ptr<int>> out;
  ASSERT_EQ(mb.try_pop(out), MailboxStatus::ok);
  EXPECT_EQ(**out, 1);

  Mailbox<std::vector<float>> vb(2);
  std::vector<float> big(1000, 0.5f);
  const float* data = big.data();
  EXPECT_EQ(vb.try_push(std::move(big)), MailboxStatus::ok);
  std::optional<std::vector<float>> got;
  ASSERT_EQ(vb.try_pop(got), MailboxStatus::ok);
  EXPECT_EQ(got->data(), data);  // moved, never copied
  EXPECT_EQ(got->size(), 1000u);
}

TEST(Mailbox, CloseIsEndOfStreamAfterDrain) {
  Mailbox<int> mb(4);
  int data_wakes = 0;
  mb.set_wakers([&] { ++data_wakes; }, [] {});
  std::optional<int> v;
  EXPECT_FALSE(mb.await_data());
  mb.try_push(1);
  EXPECT_EQ(data_wakes, 1);
  mb.try_push(2);
  mb.close();
  EXPECT_EQ(mb.try_push(3), MailboxStatus::closed);
  ASSERT_EQ(mb.try_pop(v), MailboxStatus::ok);
  EXPECT_EQ(*v, 1);
  ASSERT_EQ(mb.try_pop(v), MailboxStatus::ok);
  EXPECT_EQ(*v, 2);
  EXPECT_EQ(mb.try_pop(v), MailboxStatus::closed);
  EXPECT_TRUE(mb.await_data());  // nothing to wait for any more
}

TEST(Mailbox, CloseWakesAWaitingConsumer) {
  Mailbox<int> mb(1);
  int data_wakes = 0;
  mb.set_wakers([&] { ++data_wakes; }, [] {});
  EXPECT_FALSE(mb.await_data());
  mb.close();
  EXPECT_EQ(data_wakes, 1);
}

TEST(Mailbox, AbortByConsumerReachesProducer) {
  Mailbox<int> mb(1);
  int room_wakes = 0;
  mb.set_wakers([] {}, [&] { ++room_wakes; });
  mb.try_push(1);
  EXPECT_FALSE(mb.await_room());
  mb.abort(Error{errc::cancelled, "consumer gave up"});
  EXPECT_EQ(room_wakes, 1);
  EXPECT_EQ(mb.try_push(2), MailboxStatus::aborted);
  EXPECT_TRUE(mb.aborted());
  EXPECT_EQ(mb.error().code, errc::cancelled);
  EXPECT_EQ(mb.error().message, "consumer gave up");
  mb.abort(Error{errc::internal, "second"});  // first wins
  EXPECT_EQ(mb.error().message, "consumer gave up");
}

TEST(Mailbox, AbortByProducerReachesConsumerAtOnceEvenWithQueuedMessages) {
  Mailbox<int> mb(4);
  int data_wakes = 0;
  mb.set_wakers([&] { ++data_wakes; }, [] {});
  mb.try_push(1);
  mb.try_push(2);
  mb.abort(Error{errc::io_failed, "producer failed"});
  EXPECT_EQ(data_wakes, 1);
  std::optional<int> v;
  EXPECT_EQ(mb.try_pop(v), MailboxStatus::aborted);
  EXPECT_FALSE(v.has_value());
  mb.close();  // ignored once aborted
  EXPECT_TRUE(mb.aborted());
}

TEST(Mailbox, WakesProducerWhenASlotFrees) {
  Mailbox<int> mb(2);
  int room_wakes = 0;
  mb.set_wakers([] {}, [&] { ++room_wakes; });
  mb.try_push(1);
  EXPECT_TRUE(mb.await_room());  // room left: no need to sleep
  mb.try_push(2);
  EXPECT_FALSE(mb.await_room());
  std::optional<int> v;
  mb.try_pop(v);
  EXPECT_EQ(room_wakes, 1);
  mb.try_pop(v);
  EXPECT_EQ(room_wakes, 1);  // one-shot: not re-armed
}

TEST(Mailbox, SecondDetachDestroysQueuedMessages) {
  test::Liveness live;
  {
    Mailbox<test::Counted> mb(4);
    mb.try_push(test::Counted(0, &live));
    mb.try_push(test::Counted(1, &live));
    EXPECT_EQ(live.alive.load(), 2);
    mb.abort(Error{errc::cancelled, "stop"});
    mb.detach_producer();
    EXPECT_EQ(live.alive.load(), 2);
    mb.detach_consumer();
    EXPECT_EQ(live.alive.load(), 0);  // before the mailbox itself goes
  }
  {
    Mailbox<test::Counted> mb(4);
    mb.try_push(test::Counted(0, &live));
    mb.detach_consumer();  // leaving an open mailbox aborts it for the producer
    EXPECT_EQ(mb.try_push(test::Counted(1, &live)), MailboxStatus::aborted);
    EXPECT_EQ(mb.error().code, errc::queue_closed);
    mb.detach_producer();
    EXPECT_EQ(live.alive.load(), 0);
  }
  {
    Mailbox<test::Counted> mb(4);
    mb.try_push(test::Counted(0, &live));
  }  // destructor covers a mailbox nobody detached
  EXPECT_EQ(live.alive.load(), 0);
}

// Two threads, a tiny mailbox and the mailbox's own wake-ups (no polling): every message arrives, in
// order, and no wake-up is lost (a lost one would show as a 1 s wait timing out).
TEST(Mailbox, TwoThreadsFifoWithoutLostWakeups) {
  constexpr int kCount = 10000;
  Mailbox<std::unique_ptr<int>> mb(2);
  struct Signal {
    std::mutex m;
    std::condition_variable cv;
    uint64_t epoch = 0;
    void wake() {
      {
        std::lock_guard l(m);
        ++epoch;
      }
      cv.notify_one();
    }
    uint64_t now() {
      std::lock_guard l(m);
      return epoch;
    }
    bool wait(uint64_t seen) {  // false on timeout
      std::unique_lock l(m);
      return cv.wait_for(l, std::chrono::seconds(1), [&] { return epoch != seen; });
    }
  } data, room;
  mb.set_wakers([&] { data.wake(); }, [&] { room.wake(); });
  std::atomic<int> lost{0};

  std::thread producer([&] {
    for (int i = 0; i < kCount;) {
      auto msg = std::make_unique<int>(i);
      for (;;) {
        if (mb.try_push(std::move(msg)) == MailboxStatus::ok) break;
        uint64_t seen = room.now();
        if (mb.await_room()) continue;
        if (!room.wait(seen)) ++lost;
      }
      ++i;
    }
    mb.close();
  });
  int expect = 0;
  bool in_order = true;
  std::optional<std::unique_ptr<int>> v;
  for (;;) {
    MailboxStatus s = mb.try_pop(v);
    if (s == MailboxStatus::ok) {
      in_order = in_order && **v == expect;
      ++expect;
      continue;
    }
    if (s == MailboxStatus::closed) break;
    ASSERT_EQ(s, MailboxStatus::empty);
    uint64_t seen = data.now();
    if (mb.await_data()) continue;
    if (!data.wait(seen)) ++lost;
  }
  producer.join();
  EXPECT_EQ(expect, kCount);
  EXPECT_TRUE(in_order);
  EXPECT_EQ(lost.load(), 0);
  EXPECT_LE(mb.high_water(), 2u);
}

}  // namespace
}  // namespace ilre::engine
