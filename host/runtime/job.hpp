#pragma once
/// @file job.hpp
/// One unit of queued work (a generation, an image message, a preprocess or a model preload) with the
/// sink it reports to, the client that owns it, its priority, deadline and cancellation token.
/// Exactly one final event (result or error) goes to the sink per job: whoever wins
/// `claim_answer()` (executor, cancel, timeout watchdog, shutdown) sends it.
/// Thread-safety: immutable fields after submit; progress fields and claim are synchronised.

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "host/runtime/job_sink.hpp"
#include "sdxlhost/sdk/context.hpp"
#include "sdxlhost/sdk/request.hpp"

namespace sdxlhost::host::runtime {

using Clock = std::chrono::steady_clock;

/// Queue levels; lower runs first.
enum class Priority { High = 0, Normal = 1, Low = 2 };

/// "high" | "normal" | "low" -> Priority (anything else: Normal).
Priority priority_from_string(const std::string& text);
/// Priority -> "high" | "normal" | "low".
const char* to_string(Priority priority);

class Job;
/// The work a job does on an executor thread; returns the success response's `data`.
/// Throws sdk::Error (or anything: reported as INTERNAL_ERROR).
using JobWork = std::function<nlohmann::json(Job& job)>;

/// A queued or running job.
class Job {
 public:
  /// A job whose deadline is `timeout_s` after now (none when <= 0), reporting to `sink` (may be
  /// null: nobody listens), owned by client `client_id` (0: none).
  Job(std::string request_id, std::string kind, Priority priority, double timeout_s, std::shared_ptr<JobSink> sink,
      JobWork work, std::uint64_t client_id = 0);

  /// The request id (unique among queued and running jobs).
  const std::string& request_id() const { return request_id_; }
  /// "generation", an image message's type (sdk::image_messages()), "preprocess", "load_model".
  const std::string& kind() const { return kind_; }
  /// The queue level.
  Priority priority() const { return priority_; }
  /// Where its events go (null: nobody listens).
  const std::shared_ptr<JobSink>& sink() const { return sink_; }
  /// The client that asked (its disconnect drops the job; 0 when none).
  std::uint64_t connection_id() const { return client_id_; }
  /// Set by cancel, disconnect and shutdown; stages see it through their Context.
  const std::shared_ptr<sdk::CancellationToken>& token() const { return token_; }
  /// When the job was queued.
  Clock::time_point enqueued_at() const { return enqueued_at_; }
  /// When metadata.timeout runs out (queue wait + run).
  Clock::time_point deadline() const { return deadline_; }
  /// Runs the work (executor thread).
  nlohmann::json run() { return work_(*this); }

  /// True for exactly one caller: the one that sends the final event.
  bool claim_answer() { return !answered_.exchange(true); }
  /// Warnings collected before the job ran (parsing); the response carries them.
  std::vector<std::string> warnings;

  /// Records progress for `status` (any thread). A new stage clears the detail.
  void set_progress(const std::string& stage, int step, int total_steps);
  /// Records where the current step is inside a model (sdk::report_detail) for `status`.
  void set_detail(const std::string& part, int index, int count);
  /// Records that a progress event of this job was just sent (any thread).
  void mark_progress_sent() { progress_sent_ns_.store(Clock::now().time_since_epoch().count()); }
  /// When the last progress event was sent (the epoch of Clock when none was).
  Clock::time_point progress_sent_at() const { return Clock::time_point(Clock::duration(progress_sent_ns_.load())); }
  /// {request_id, kind, priority, stage, step, total_steps, detail?, elapsed_s, queued_s}.
  nlohmann::json describe() const;
  /// Marks the moment the job left the queue.
  void mark_started() { started_at_ = Clock::now(); started_.store(true); }
  /// True once an executor took the job.
  bool started() const { return started_.load(); }
  /// When an executor took the job (valid once started()).
  Clock::time_point started_at() const { return started_at_; }

 private:
  std::string request_id_;
  std::string kind_;
  Priority priority_;
  std::shared_ptr<JobSink> sink_;
  std::uint64_t client_id_;
  JobWork work_;
  std::shared_ptr<sdk::CancellationToken> token_ = std::make_shared<sdk::CancellationToken>();
  Clock::time_point enqueued_at_ = Clock::now();
  Clock::time_point deadline_;
  Clock::time_point started_at_{};
  std::atomic<bool> started_{false};
  std::atomic<bool> answered_{false};
  std::atomic<Clock::rep> progress_sent_ns_{0};
  mutable std::mutex progress_mutex_;
  std::string stage_;
  int step_ = 0;
  int total_steps_ = 0;
  std::string detail_part_;
  int detail_index_ = 0;
  int detail_count_ = 0;
};

}  // namespace sdxlhost::host::runtime
