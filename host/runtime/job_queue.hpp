#pragma once
/// @file job_queue.hpp
/// The priority queue of waiting jobs: three levels (high, normal, low), FIFO within a level,
/// bounded by `queue.max_pending`. Executors block in `pop`; cancel, disconnect, timeout and
/// shutdown take jobs out by id, connection, deadline or all at once.
/// Thread-safety: every method may be called from any thread.

#include <array>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "host/runtime/job.hpp"

namespace sdxlhost::host::runtime {

/// Waiting jobs by priority.
class JobQueue {
 public:
  /// At most `max_pending` jobs wait at once.
  explicit JobQueue(std::size_t max_pending) : max_pending_(max_pending) {}

  /// Adds a job. Throws sdk::Error(QueueFull) when max_pending jobs wait already and
  /// Error(ShuttingDown) after close().
  /// `on_queued(depth)` runs under the queue's lock once the job is in, so whatever it logs
  /// comes before any executor can start the job.
  void push(std::shared_ptr<Job> job, const std::function<void(std::size_t)>& on_queued = {});
  /// The next job (highest priority, oldest first); blocks while empty. Null after close().
  /// `on_taken` (optional) runs under the queue's lock once the job is out, so no observer can
  /// find the job in neither the queue nor where `on_taken` puts it.
  std::shared_ptr<Job> pop(const std::function<void(const std::shared_ptr<Job>&)>& on_taken = {});
  /// Takes out the job with this request id; null when it is not waiting.
  std::shared_ptr<Job> remove(const std::string& request_id);
  /// Takes out every job of a connection.
  std::vector<std::shared_ptr<Job>> remove_connection(std::uint64_t connection_id);
  /// Takes out every job whose deadline is at or before `now`.
  std::vector<std::shared_ptr<Job>> remove_expired(Clock::time_point now);
  /// The earliest deadline among waiting jobs (time_point::max() when none).
  Clock::time_point next_deadline() const;
  /// Refuses new jobs, wakes every pop() (which returns null) and returns the jobs still waiting.
  std::vector<std::shared_ptr<Job>> close();
  /// True when this request id is waiting.
  bool contains(const std::string& request_id) const;

  /// Jobs waiting now.
  std::size_t size() const;
  /// Changes the bound (reload_config); jobs already waiting stay.
  void set_max_pending(std::size_t max_pending);
  /// {depth, max_pending, high:[ids], normal:[ids], low:[ids]}.
  nlohmann::json describe() const;

 private:
  mutable std::mutex mutex_;
  std::condition_variable available_;
  std::array<std::deque<std::shared_ptr<Job>>, 3> levels_;
  std::size_t max_pending_;
  bool closed_ = false;
};

}  // namespace sdxlhost::host::runtime
