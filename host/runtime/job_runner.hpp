#pragma once
/// @file job_runner.hpp
/// Runs queued jobs on a fixed set of executor threads (`queue.executors`, one per device by
/// default), and owns what can end a job early: `cancel` (queued: answered at once; running:
/// its token is set and the stage stops at its next check), a client disconnect (its queued
/// jobs dropped, running ones cancelled), the timeout watchdog (queued jobs past their
/// deadline answered TIMEOUT; running ones see the deadline through their Context) and
/// shutdown. Every job gets exactly one final event (result or error) on its JobSink.
/// Thread-safety: every method may be called from any thread.

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <atomic>
#include <vector>

#include <nlohmann/json.hpp>

#include "host/runtime/job.hpp"
#include "host/runtime/job_queue.hpp"
#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::host::runtime {

/// Executors + queue + watchdog.
class JobRunner {
 public:
  /// `executors` threads (at least 1) run jobs from a queue of at most `max_pending`.
  JobRunner(std::size_t max_pending, int executors);
  /// Shuts down without grace (running jobs are cancelled).
  ~JobRunner();
  JobRunner(const JobRunner&) = delete;
  JobRunner& operator=(const JobRunner&) = delete;

  /// Starts the executor and watchdog threads.
  void start();
  /// Queues a job. Throws sdk::Error: ValidationError (field "request_id") when a job with this
  /// id is queued or running, QueueFull, ShuttingDown.
  void submit(std::shared_ptr<Job> job);
  /// Cancels a job: "queued" (answered CANCELLED now), "running" (token set), or "" when no
  /// such job is queued or running.
  std::string cancel(const std::string& request_id);
  /// The client went away: drops its queued jobs (no answer) and cancels its running ones.
  void drop_connection(std::uint64_t connection_id);
  /// Stops taking work: queued jobs are answered SHUTTING_DOWN, running jobs get `grace_s`
  /// seconds to finish and are then cancelled; returns when every executor has stopped.
  void shutdown(double grace_s);
  /// Blocks until no job is queued or running (new jobs may still arrive meanwhile).
  void wait_idle();
  /// True once shutdown() began.
  bool shutting_down() const { return shutting_down_.load(); }

  /// {queue: {...}, running: [...], executors}.
  nlohmann::json describe() const;
  /// Number of running jobs.
  std::size_t running_count() const;
  /// Changes queue.max_pending (reload_config).
  void set_max_pending(std::size_t max_pending) { queue_.set_max_pending(max_pending); }
  /// `queue.progress_heartbeat_s`: a running job that reported a stage but sent no progress
  /// event for this long gets one repeating its stage, step and detail (0 = off).
  void set_progress_heartbeat(double seconds) { heartbeat_s_.store(seconds); }

  /// Sends the final error event of `job` unless it was answered already.
  static void answer_error(Job& job, const sdk::Error& error);

 private:
  void executor_loop(int index);
  void execute(const std::shared_ptr<Job>& job);
  void watchdog_loop();

  JobQueue queue_;
  int executor_count_;
  std::vector<std::thread> executors_;
  std::thread watchdog_;
  // Lock order: the queue's lock may be held while taking mutex_ (JobQueue::pop's callback),
  // never the other way round.
  mutable std::mutex mutex_;               // guards running_, stop_watchdog_
  std::condition_variable changed_;        // running_ shrank, or watchdog must re-check
  std::map<std::string, std::shared_ptr<Job>> running_;
  std::atomic<double> heartbeat_s_{2.0};
  void send_heartbeats(Clock::time_point now);
  bool stop_watchdog_ = false;
  std::mutex shutdown_mutex_;              // serialises shutdown()
  std::atomic<bool> shutting_down_{false};
  std::atomic<bool> started_{false};
};

}  // namespace sdxlhost::host::runtime
