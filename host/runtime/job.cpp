#include "host/runtime/job.hpp"

namespace sdxlhost::host::runtime {

Priority priority_from_string(const std::string& text) {
  if (text == "high") return Priority::High;
  if (text == "low") return Priority::Low;
  return Priority::Normal;
}

const char* to_string(Priority priority) {
  switch (priority) {
    case Priority::High: return "high";
    case Priority::Low: return "low";
    default: return "normal";
  }
}

Job::Job(std::string request_id, std::string kind, Priority priority, double timeout_s, std::shared_ptr<JobSink> sink,
         JobWork work, std::uint64_t client_id)
    : request_id_(std::move(request_id)),
      kind_(std::move(kind)),
      priority_(priority),
      sink_(std::move(sink)),
      client_id_(client_id),
      work_(std::move(work)) {
  auto timeout = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s));
  deadline_ = timeout_s > 0 ? enqueued_at_ + timeout : Clock::time_point::max();
}

void Job::set_progress(const std::string& stage, int step, int total_steps) {
  std::lock_guard<std::mutex> lock(progress_mutex_);
  if (stage != stage_) detail_part_.clear();
  stage_ = stage;
  step_ = step;
  total_steps_ = total_steps;
}

void Job::set_detail(const std::string& part, int index, int count) {
  std::lock_guard<std::mutex> lock(progress_mutex_);
  detail_part_ = part;
  detail_index_ = index;
  detail_count_ = count;
}

nlohmann::json Job::describe() const {
  auto now = Clock::now();
  auto seconds = [](Clock::duration d) { return std::chrono::duration<double>(d).count(); };
  std::lock_guard<std::mutex> lock(progress_mutex_);
  nlohmann::json out = {{"request_id", request_id_},
                        {"kind", kind_},
                        {"priority", to_string(priority_)},
                        {"connection", connection_id()}};
  if (started_.load()) {
    out["stage"] = stage_;
    out["step"] = step_;
    out["total_steps"] = total_steps_;
    if (!detail_part_.empty())
      out["detail"] = {{"part", detail_part_}, {"index", detail_index_}, {"count", detail_count_}};
    out["elapsed_s"] = seconds(now - started_at_);
    out["queued_s"] = seconds(started_at_ - enqueued_at_);
  } else {
    out["queued_s"] = seconds(now - enqueued_at_);
  }
  return out;
}

}  // namespace sdxlhost::host::runtime
