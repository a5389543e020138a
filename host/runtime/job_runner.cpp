#include "host/runtime/job_runner.hpp"

#include <algorithm>
#include <new>

#include "host/common/client_text.hpp"
#include "host/common/logging.hpp"
#include "host/common/memory.hpp"
#include "host/graph/plan_runner.hpp"
#include "host/graph/planner.hpp"
#include "host/metrics/metrics.hpp"

namespace sdxlhost::host::runtime {
namespace {

using sdk::Error;
using sdk::ErrorCode;

constexpr auto kWatchdogTick = std::chrono::milliseconds(100);

/// Counts the answer and the job's time in the metrics.
void record(const Job& job, const std::string& code, const std::string& outcome) {
  auto& registry = metrics::Registry::global();
  registry.count_response(job.kind(), code);
  const auto since = job.started_at() == Clock::time_point{} ? job.enqueued_at() : job.started_at();
  registry.observe_job(job.kind(), outcome, std::chrono::duration<double>(Clock::now() - since).count());
}

void answer_success(Job& job, nlohmann::json data, const std::vector<std::string>& warnings) {
  if (!job.claim_answer()) return;
  record(job, "OK", "ok");
  if (job.sink()) job.sink()->result(job.request_id(), std::move(data), warnings);
}

}  // namespace

JobRunner::JobRunner(std::size_t max_pending, int executors)
    : queue_(max_pending), executor_count_(std::max(1, executors)) {}

JobRunner::~JobRunner() { shutdown(0.0); }

void JobRunner::start() {
  if (started_.exchange(true)) return;
  for (int i = 0; i < executor_count_; ++i) executors_.emplace_back([this, i] { executor_loop(i); });
  watchdog_ = std::thread([this] { watchdog_loop(); });
}

void JobRunner::answer_error(Job& job, const Error& error) {
  if (!job.claim_answer()) return;
  auto log = component_logger("runtime");
  log->info("[{}] failed: {} ({})", job.request_id(), error.what(), sdk::to_string(error.code()));
  const std::string outcome = error.code() == ErrorCode::Cancelled ? "cancelled"
                              : error.code() == ErrorCode::Timeout ? "timeout"
                                                                   : "error";
  record(job, sdk::to_string(error.code()), outcome);
  if (job.sink()) job.sink()->error(job.request_id(), error, job.warnings);
}

void JobRunner::submit(std::shared_ptr<Job> job) {
  bool running = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    running = running_.count(job->request_id()) != 0;
  }
  if (running || queue_.contains(job->request_id()))
    throw Error(ErrorCode::ValidationError, "a job with this request_id is already queued or running",
                "request_id");
  queue_.push(job, [&job](std::size_t waiting) {
    component_logger("runtime")->info("[{}] queued {} (priority {}, {} waiting)", job->request_id(), job->kind(),
                                      to_string(job->priority()), waiting);
  });
  changed_.notify_all();  // the watchdog may have a nearer deadline now
}

std::string JobRunner::cancel(const std::string& request_id) {
  if (auto job = queue_.remove(request_id)) {
    job->token()->cancel();
    answer_error(*job, Error(ErrorCode::Cancelled, "cancelled while queued"));
    return "queued";
  }
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = running_.find(request_id);
  if (it == running_.end()) return "";
  it->second->token()->cancel();
  component_logger("runtime")->info("[{}] cancel requested while running", request_id);
  return "running";
}

void JobRunner::drop_connection(std::uint64_t connection_id) {
  auto log = component_logger("runtime");
  for (auto& job : queue_.remove_connection(connection_id)) {
    job->claim_answer();  // nobody to answer
    log->info("[{}] dropped: client {} disconnected", job->request_id(), connection_id);
  }
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& [id, job] : running_) {
    if (job->connection_id() != connection_id) continue;
    job->token()->cancel();
    log->info("[{}] cancelled: client {} disconnected", id, connection_id);
  }
}

void JobRunner::executor_loop(int index) {
  component_logger("runtime")->debug("executor {} started", index);
  auto mark_running = [this](const std::shared_ptr<Job>& job) {
    std::lock_guard<std::mutex> lock(mutex_);
    running_[job->request_id()] = job;
  };
  while (auto job = queue_.pop(mark_running)) execute(job);
  component_logger("runtime")->debug("executor {} stopped", index);
}

void JobRunner::execute(const std::shared_ptr<Job>& job) {
  job->mark_started();
  auto log = component_logger("runtime");
  try {
    if (job->token()->cancelled()) throw Error(ErrorCode::Cancelled, "cancelled before it started");
    if (Clock::now() >= job->deadline())
      throw Error(ErrorCode::Timeout, "timed out while queued", "data.metadata.timeout");
    log->info("[{}] started {}", job->request_id(), job->kind());
    if (job->sink()) job->sink()->started(job->request_id(), job->kind());
    nlohmann::json data = job->run();
    log->info("[{}] done in {:.3f} s", job->request_id(),
              std::chrono::duration<double>(Clock::now() - job->started_at()).count());
    answer_success(*job, std::move(data), job->warnings);
  } catch (const Error& error) {
    answer_error(*job, error);
  } catch (const std::bad_alloc&) {
    answer_error(*job, host::out_of_memory(job->kind(), ""));
  } catch (const std::exception& error) {
    if (host::is_allocation_failure(error.what())) {
      answer_error(*job, host::out_of_memory(job->kind(), error.what()));
    } else {
      log->error("[{}] {} failed: {}", job->request_id(), job->kind(), error.what());  // with any backtrace
      answer_error(*job, Error(ErrorCode::InternalError, client_message(error)));
    }
  } catch (...) {
    answer_error(*job, Error(ErrorCode::InternalError, "unknown exception"));
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    running_.erase(job->request_id());
  }
  changed_.notify_all();
  // The job's tensors and any model it was the last user of are freed by now: give the pages
  // back (memory.hpp).
  release_free_memory();
}

void JobRunner::send_heartbeats(Clock::time_point now) {
  const double seconds = heartbeat_s_.load();
  if (seconds <= 0) return;
  const auto every = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  std::vector<std::shared_ptr<Job>> jobs;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& [id, job] : running_) jobs.push_back(job);
  }
  for (const auto& job : jobs) {
    if (!job->started() || !job->sink()) continue;
    if (now - std::max(job->progress_sent_at(), job->started_at()) < every) continue;
    const nlohmann::json described = job->describe();
    const std::string stage = described.value("stage", std::string());
    if (stage.empty()) continue;  // a job that reports no stages (load_model) sends no progress
    ProgressEvent event{job->request_id(), stage, described.value("step", 0), described.value("total_steps", 0),
                        std::chrono::duration<double>(now - job->started_at()).count(), std::nullopt};
    if (described.contains("detail"))
      event.detail = ProgressDetail{described["detail"].value("part", ""), described["detail"].value("index", 0),
                                    described["detail"].value("count", 0)};
    job->sink()->progress(event);
    job->mark_progress_sent();
  }
}

void JobRunner::watchdog_loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stop_watchdog_) {
    lock.unlock();
    auto now = Clock::now();
    for (auto& job : queue_.remove_expired(now))
      answer_error(*job, Error(ErrorCode::Timeout, "timed out while queued", "data.metadata.timeout"));
    send_heartbeats(now);
    auto wake = std::min(queue_.next_deadline(), Clock::now() + kWatchdogTick);
    lock.lock();
    changed_.wait_until(lock, wake);
  }
}

void JobRunner::shutdown(double grace_s) {
  std::lock_guard<std::mutex> serial(shutdown_mutex_);  // a second caller waits for the first
  if (shutting_down_.exchange(true)) return;
  for (auto& job : queue_.close())
    answer_error(*job, Error(ErrorCode::ShuttingDown, "the host is shutting down"));
  {
    std::unique_lock<std::mutex> lock(mutex_);
    auto until = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(grace_s));
    changed_.wait_until(lock, until, [this] { return running_.empty(); });
    for (auto& [id, job] : running_) job->token()->cancel();
    stop_watchdog_ = true;
  }
  changed_.notify_all();
  for (auto& thread : executors_)
    if (thread.joinable()) thread.join();
  if (watchdog_.joinable()) watchdog_.join();
}

void JobRunner::wait_idle() {
  for (;;) {
    if (queue_.size() == 0) {  // the queue's lock is never taken under mutex_
      std::unique_lock<std::mutex> lock(mutex_);
      if (running_.empty()) return;
      changed_.wait_for(lock, kWatchdogTick);
    } else {
      std::this_thread::sleep_for(kWatchdogTick);
    }
  }
}

nlohmann::json JobRunner::describe() const {
  nlohmann::json running = nlohmann::json::array();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& [id, job] : running_) running.push_back(job->describe());
  }
  return {{"queue", queue_.describe()}, {"running", running}, {"executors", executor_count_}};
}

std::size_t JobRunner::running_count() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return running_.size();
}

}  // namespace sdxlhost::host::runtime
