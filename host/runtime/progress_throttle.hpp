#pragma once
/// @file progress_throttle.hpp
/// Decides which progress reports of a job become wire events: the first step of each stage,
/// the last step, and otherwise at most one per `queue.progress_interval_ms`.
/// Thread-safety: none; one per job, used by the job's executor thread.

#include <chrono>
#include <string>
#include <string_view>

namespace sdxlhost::host::runtime {

/// Rate limiter for one job's progress events.
class ProgressThrottle {
 public:
  explicit ProgressThrottle(std::chrono::milliseconds interval) : interval_(interval) {}

  /// True when this report should be sent now (and records it as sent).
  bool should_send(std::string_view stage, int step, int total_steps,
                   std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now()) {
    bool stage_changed = stage != last_stage_;
    bool last_step = step >= total_steps;
    bool interval_passed = !sent_any_ || now - last_sent_ >= interval_;
    if (!(stage_changed || last_step || interval_passed)) return false;
    sent_any_ = true;
    last_sent_ = now;
    last_stage_ = std::string(stage);
    return true;
  }

  /// True when a report from inside a step (sdk::report_detail) should be sent now: at most one
  /// per interval, counted together with the step reports.
  bool should_send_detail(std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now()) {
    if (sent_any_ && now - last_sent_ < interval_) return false;
    sent_any_ = true;
    last_sent_ = now;
    return true;
  }

 private:
  std::chrono::milliseconds interval_;
  std::chrono::steady_clock::time_point last_sent_{};
  std::string last_stage_;
  bool sent_any_ = false;
};

}  // namespace sdxlhost::host::runtime
