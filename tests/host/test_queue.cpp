// JobQueue: priority order, FIFO within a level, bounds, removal by id/connection/deadline.
#include <gtest/gtest.h>

#include "host/runtime/job_queue.hpp"
#include "host/runtime/progress_throttle.hpp"
#include "common/host_fixture.hpp"

namespace sdxlhost::test_support {
namespace {

using runtime::Job;
using runtime::Priority;

std::shared_ptr<Job> job(const std::string& id, Priority priority, double timeout_s = 60.0) {
  return std::make_shared<Job>(id, "generation", priority, timeout_s, nullptr, [](Job&) { return json(); });
}

TEST(JobQueue, HighestPriorityFirstFifoWithinLevel) {
  runtime::JobQueue queue(10);
  queue.push(job("low1", Priority::Low));
  queue.push(job("normal1", Priority::Normal));
  queue.push(job("high1", Priority::High));
  queue.push(job("normal2", Priority::Normal));
  queue.push(job("high2", Priority::High));
  std::vector<std::string> order;
  for (int i = 0; i < 5; ++i) order.push_back(queue.pop()->request_id());
  EXPECT_EQ(order, (std::vector<std::string>{"high1", "high2", "normal1", "normal2", "low1"}));
}

TEST(JobQueue, BoundedRemovableAndClosable) {
  runtime::JobQueue queue(2);
  queue.push(job("a", Priority::Normal));
  queue.push(job("b", Priority::Low, 0.001));
  try {
    queue.push(job("c", Priority::High));
    FAIL() << "expected QUEUE_FULL";
  } catch (const sdk::Error& error) {
    EXPECT_EQ(error.code(), sdk::ErrorCode::QueueFull);
  }
  std::this_thread::sleep_for(5ms);
  auto expired = queue.remove_expired(runtime::Clock::now());
  ASSERT_EQ(expired.size(), 1u);
  EXPECT_EQ(expired[0]->request_id(), "b");
  EXPECT_TRUE(queue.contains("a"));
  EXPECT_EQ(queue.remove("a")->request_id(), "a");
  EXPECT_EQ(queue.remove("a"), nullptr);
  queue.push(job("d", Priority::Normal));
  EXPECT_EQ(queue.close().size(), 1u);
  EXPECT_EQ(queue.pop(), nullptr);
  EXPECT_THROW(queue.push(job("e", Priority::Normal)), sdk::Error);
}

TEST(JobQueue, PopBlocksUntilPush) {
  runtime::JobQueue queue(4);
  std::thread producer([&] {
    std::this_thread::sleep_for(20ms);
    queue.push(job("late", Priority::Normal));
  });
  EXPECT_EQ(queue.pop()->request_id(), "late");
  producer.join();
}

TEST(ProgressThrottle, FirstLastAndInterval) {
  runtime::ProgressThrottle throttle(std::chrono::milliseconds(100));
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(throttle.should_send("denoise", 1, 10, t0));
  EXPECT_FALSE(throttle.should_send("denoise", 2, 10, t0 + 10ms));
  EXPECT_TRUE(throttle.should_send("denoise", 3, 10, t0 + 150ms));
  EXPECT_TRUE(throttle.should_send("decode", 1, 10, t0 + 160ms));  // new stage
  EXPECT_TRUE(throttle.should_send("decode", 10, 10, t0 + 170ms)); // last step
}

}  // namespace
}  // namespace sdxlhost::test_support
