// The CLI's Ctrl-C / SIGTERM handling (cli/interrupt.h): a cancel first, an exit when the cancel cannot land.
#include "cli/interrupt.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

namespace ilre::cli {
namespace {

using namespace std::chrono_literals;

TEST(InterruptGuard, FirstSignalCancels) {
  CancelHandle h;
  InterruptGuard g(h, 10s);
  raise(SIGINT);
  for (int i = 0; i < 100 && !h.cancelled(); ++i) std::this_thread::sleep_for(20ms);
  EXPECT_TRUE(h.cancelled());
}

// A command stuck where no cancel reaches it (blocked writing to a pipe nobody reads) still ends on one
// SIGTERM, with 128 + SIGTERM, once the grace period is over.
TEST(InterruptGuardDeathTest, StuckCommandExitsAfterTheGrace) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        CancelHandle h;
        InterruptGuard g(h, 200ms);
        raise(SIGTERM);
        std::this_thread::sleep_for(30s);
        std::_Exit(0);
      },
      ::testing::ExitedWithCode(128 + SIGTERM), "grace period");
}

// A command that ends within the grace period ends normally: the guard's exit never fires after it.
TEST(InterruptGuardDeathTest, FinishedCommandIsNotKilled) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const auto finish_early = [] {
    {
      CancelHandle h;
      InterruptGuard g(h, 300ms);
      raise(SIGTERM);
      std::this_thread::sleep_for(50ms);
    }
    std::this_thread::sleep_for(600ms);
    std::_Exit(7);
  };
  EXPECT_EXIT(finish_early(), ::testing::ExitedWithCode(7), "");
}

}  // namespace
}  // namespace ilre::cli
