#pragma once
/// @file request_thread.hpp
/// The thread that does the protocol work of incoming lines (envelope parsing, request
/// validation, model resolution, planning), so the transports' I/O thread only reads and writes.
/// Tasks run one at a time in the order they were posted, so a client's lines are handled in the
/// order it sent them and its disconnect after its last line, as when the I/O thread did this.
/// Backpressure: post() blocks while `max_queued_tasks` tasks wait or the waiting tasks hold more
/// than `max_queued_bytes` of lines (one task is always admitted), so a client that writes
/// faster than the host parses is slowed at its transport, as when the I/O thread parsed,
/// instead of growing the host's memory and the time its stop takes.
/// Thread-safety: post/stop may be called from any thread.

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>

namespace sdxlhost::host::protocol {

/// One FIFO worker thread with a byte bound.
class RequestThread {
 public:
  /// How many tasks may wait by default (a client pipelining more is slowed down).
  static constexpr std::size_t kMaxQueuedTasks = 256;
  /// Starts the thread.
  explicit RequestThread(std::size_t max_queued_bytes, std::size_t max_queued_tasks = kMaxQueuedTasks);
  /// Stops (see stop()).
  ~RequestThread();
  RequestThread(const RequestThread&) = delete;
  RequestThread& operator=(const RequestThread&) = delete;

  /// Queues `task`, which carries `bytes` of line data. Blocks while the bound is reached.
  /// Ignored after stop().
  void post(std::function<void()> task, std::size_t bytes = 0);
  /// Ends the thread after the task it runs now and waits for it; tasks still waiting are
  /// dropped (the host is going away: as a transport drops lines it has not handed over).
  /// Safe more than once.
  void stop();

 private:
  void run();

  std::size_t max_queued_bytes_;
  std::size_t max_queued_tasks_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<std::pair<std::function<void()>, std::size_t>> tasks_;
  std::size_t queued_bytes_ = 0;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace sdxlhost::host::protocol
