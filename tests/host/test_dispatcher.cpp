// The protocol dispatcher and what it stands on: the request thread (order, backpressure,
// stop), the typed JobSink a job reports to, the wire encoding of those events, and that lines
// are handled off the thread that hands them in (the transports' I/O thread).
#include <atomic>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>

#include "host/protocol/dispatcher.hpp"
#include "host/protocol/request_thread.hpp"
#include "host/protocol/wire_sink.hpp"
#include "common/host_fixture.hpp"

namespace sdxlhost::test_support {
namespace {

namespace protocol = host::protocol;

/// Records every event, and the thread that delivered the final one.
class RecordingSink : public runtime::JobSink {
 public:
  void started(const std::string& request_id, const std::string& kind) override {
    std::lock_guard<std::mutex> lock(mutex_);
    events_.push_back("started " + request_id + " " + kind);
  }
  void progress(const runtime::ProgressEvent& event) override {
    std::lock_guard<std::mutex> lock(mutex_);
    events_.push_back("progress " + event.stage);
    progress_.push_back(event);
  }
  void result(const std::string& request_id, json data, const std::vector<std::string>&) override {
    finish("result " + request_id, std::move(data), "");
  }
  void error(const std::string& request_id, const sdk::Error& error, const std::vector<std::string>&) override {
    finish("error " + request_id, json(), sdk::to_string(error.code()));
  }

  /// Waits for the final event; false after 20 s without one.
  bool wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    return done_changed_.wait_for(lock, 20s, [this] { return done_; });
  }
  std::vector<std::string> events() {
    std::lock_guard<std::mutex> lock(mutex_);
    return events_;
  }
  std::vector<runtime::ProgressEvent> progress_events() {
    std::lock_guard<std::mutex> lock(mutex_);
    return progress_;
  }
  json data() {
    std::lock_guard<std::mutex> lock(mutex_);
    return data_;
  }
  std::string error_code() {
    std::lock_guard<std::mutex> lock(mutex_);
    return error_code_;
  }
  std::thread::id final_thread() {
    std::lock_guard<std::mutex> lock(mutex_);
    return final_thread_;
  }

 private:
  void finish(std::string event, json data, std::string error_code) {
    std::lock_guard<std::mutex> lock(mutex_);
    events_.push_back(std::move(event));
    data_ = std::move(data);
    error_code_ = std::move(error_code);
    final_thread_ = std::this_thread::get_id();
    done_ = true;
    done_changed_.notify_all();
  }

  std::mutex mutex_;
  std::condition_variable done_changed_;
  std::vector<std::string> events_;
  std::vector<runtime::ProgressEvent> progress_;
  json data_;
  std::string error_code_;
  std::thread::id final_thread_;
  bool done_ = false;
};

/// A line connection that records the thread each line was sent from.
class ThreadRecordingConnection : public transport::Connection {
 public:
  std::uint64_t id() const override { return id_; }
  void send(std::string line) override {
    std::lock_guard<std::mutex> lock(mutex_);
    lines_.push_back(json::parse(line));
    threads_.push_back(std::this_thread::get_id());
    arrived_.notify_all();
  }
  bool is_open() const override { return true; }
  void close() override {}
  /// Waits for `count` lines (20 s at most) and returns them with their threads.
  std::pair<std::vector<json>, std::vector<std::thread::id>> wait_for(std::size_t count) {
    std::unique_lock<std::mutex> lock(mutex_);
    arrived_.wait_for(lock, 20s, [&] { return lines_.size() >= count; });
    return {lines_, threads_};
  }

 private:
  const std::uint64_t id_ = transport::next_connection_id();
  std::mutex mutex_;
  std::condition_variable arrived_;
  std::vector<json> lines_;
  std::vector<std::thread::id> threads_;
};

TEST(RequestThread, RunsTasksInOrderOffTheCaller) {
  protocol::RequestThread thread(1 << 20);
  std::mutex mutex;
  std::vector<int> order;
  std::atomic<bool> on_caller{false};
  std::promise<void> all_ran;
  const auto caller = std::this_thread::get_id();
  for (int i = 0; i < 50; ++i)
    thread.post([&, i] {
      if (std::this_thread::get_id() == caller) on_caller = true;
      std::lock_guard<std::mutex> lock(mutex);
      order.push_back(i);
      if (i == 49) all_ran.set_value();
    });
  ASSERT_EQ(all_ran.get_future().wait_for(10s), std::future_status::ready);
  std::lock_guard<std::mutex> lock(mutex);
  ASSERT_EQ(order.size(), 50u);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(order[i], i);
  EXPECT_FALSE(on_caller.load());
}

TEST(RequestThread, StopFinishesTheRunningTaskAndDropsTheWaitingOnes) {
  protocol::RequestThread thread(1 << 20);
  std::promise<void> entered, release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<int> ran{0};
  thread.post([&, released] {
    entered.set_value();
    released.wait();
    ++ran;
  });
  entered.get_future().wait();
  for (int i = 0; i < 10; ++i) thread.post([&] { ++ran; });
  std::thread stopper([&] { thread.stop(); });
  std::this_thread::sleep_for(20ms);
  release.set_value();
  stopper.join();
  thread.post([&] { ++ran; });  // after stop: ignored
  EXPECT_EQ(ran.load(), 1);
}

TEST(RequestThread, PostBlocksWhileTooManyTasksWait) {
  protocol::RequestThread thread(1 << 20, 2);
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  thread.post([released] { released.wait(); });  // holds the thread
  std::this_thread::sleep_for(20ms);
  thread.post([] {});
  thread.post([] {});
  std::atomic<bool> third_in{false};
  std::thread poster([&] {
    thread.post([] {});
    third_in = true;
  });
  std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(third_in.load()) << "the task bound did not hold the third line back";
  release.set_value();
  poster.join();
  EXPECT_TRUE(third_in.load());
}

TEST(RequestThread, PostBlocksWhileTheQueuedBytesAreOverTheBound) {
  protocol::RequestThread thread(10);
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  thread.post([released] { released.wait(); });  // holds the thread
  std::this_thread::sleep_for(20ms);              // ... until it took that task
  thread.post([] {}, 8);                          // queue empty: admitted whatever its size
  std::atomic<bool> second_in{false};
  std::thread poster([&] {
    thread.post([] {}, 8);  // 8 + 8 > 10: waits for the first to leave the queue
    second_in = true;
  });
  std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(second_in.load()) << "the bound did not hold the second line back";
  release.set_value();
  poster.join();
  EXPECT_TRUE(second_in.load());
}

TEST(WireSink, EncodesProgressAndAnswersAsTheWireLines) {
  auto connection = std::make_shared<ThreadRecordingConnection>();
  protocol::WireSink sink(connection);
  sink.started("r1", "generation");  // no wire message
  sink.progress({"r1", "denoise", 2, 4, 0.5, std::nullopt});
  sink.progress({"r1", "denoise", 2, 4, 0.75, runtime::ProgressDetail{"unet", 3, 9}});
  sink.result("r1", {{"ok", true}}, {"w"});
  sink.error("", sdk::Error(sdk::ErrorCode::ValidationError, "is bad", "data.x"), {});
  auto [lines, threads] = connection->wait_for(4);
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0], host::protocol::progress_event("r1", "denoise", 2, 4, 0.5));
  EXPECT_EQ(lines[1], host::protocol::progress_event("r1", "denoise", 2, 4, 0.75,
                                                     {{"part", "unet"}, {"index", 3}, {"count", 9}}));
  EXPECT_EQ(lines[2], host::protocol::success_response("r1", {{"ok", true}}, {"w"}));
  EXPECT_EQ(lines[3].value("error_code", ""), "VALIDATION_ERROR");
  EXPECT_EQ(lines[3].value("field", ""), "data.x");
  EXPECT_TRUE(lines[3]["request_id"].is_null());
}

TEST(Dispatcher, AJobReportsTypedEventsToItsSink) {
  HostFixture fixture;
  auto sink = std::make_shared<RecordingSink>();
  fixture.host().dispatcher().post(protocol::Client{transport::next_connection_id(), sink, nullptr},
                                   generation("typed", 3).dump());
  ASSERT_TRUE(sink->wait());
  const auto events = sink->events();
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events.front(), "started typed generation");
  EXPECT_EQ(events.back(), "result typed");
  EXPECT_NE(sink->final_thread(), std::this_thread::get_id());
  const auto progress = sink->progress_events();
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back().request_id, "typed");
  EXPECT_EQ(progress.back().step, progress.back().total_steps);
  EXPECT_EQ(sink->data()["generated_images"].size(), 1u) << sink->data().dump();
}

TEST(Dispatcher, ARefusedLineIsAnErrorEventWithItsCode) {
  HostFixture fixture;
  auto sink = std::make_shared<RecordingSink>();
  fixture.host().dispatcher().post(protocol::Client{transport::next_connection_id(), sink, nullptr},
                                   R"({"message_type": "inference_request", "request_id": "bad", "data": {"prompt": 5}})");
  ASSERT_TRUE(sink->wait());
  EXPECT_EQ(sink->events(), std::vector<std::string>{"error bad"});
  EXPECT_EQ(sink->error_code(), "VALIDATION_ERROR");
}

TEST(Dispatcher, LinesFromTheIoThreadAreHandledOnTheRequestThreadInOrder) {
  HostFixture fixture;
  auto connection = std::make_shared<ThreadRecordingConnection>();
  for (int i = 0; i < 5; ++i)
    fixture.host().on_line(connection, json{{"message_type", "ping"}, {"request_id", "p" + std::to_string(i)}}.dump());
  auto [lines, threads] = connection->wait_for(5);
  ASSERT_EQ(lines.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(lines[i].value("request_id", ""), "p" + std::to_string(i));
    EXPECT_NE(threads[i], std::this_thread::get_id()) << "answered on the thread that handed the line in";
  }
}

}  // namespace
}  // namespace sdxlhost::test_support
