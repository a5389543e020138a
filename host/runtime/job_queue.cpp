#include "host/runtime/job_queue.hpp"

#include <algorithm>

#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::host::runtime {
namespace {

/// Removes the jobs matching `pred` from every level, oldest first.
template <class Pred>
std::vector<std::shared_ptr<Job>> take_if(std::array<std::deque<std::shared_ptr<Job>>, 3>& levels, Pred pred) {
  std::vector<std::shared_ptr<Job>> taken;
  for (auto& level : levels) {
    auto keep = std::stable_partition(level.begin(), level.end(), [&](const auto& job) { return !pred(*job); });
    std::move(keep, level.end(), std::back_inserter(taken));
    level.erase(keep, level.end());
  }
  return taken;
}

}  // namespace

void JobQueue::push(std::shared_ptr<Job> job, const std::function<void(std::size_t)>& on_queued) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (closed_) throw sdk::Error(sdk::ErrorCode::ShuttingDown, "the host is shutting down");
    std::size_t depth = levels_[0].size() + levels_[1].size() + levels_[2].size();
    if (depth >= max_pending_)
      throw sdk::Error(sdk::ErrorCode::QueueFull, "queue is full (" + std::to_string(depth) +
                                                      " jobs waiting, queue.max_pending = " +
                                                      std::to_string(max_pending_) + ")");
    levels_[static_cast<int>(job->priority())].push_back(std::move(job));
    if (on_queued) on_queued(depth + 1);  // under the lock: before any executor can take it
  }
  available_.notify_one();
}

std::shared_ptr<Job> JobQueue::pop(const std::function<void(const std::shared_ptr<Job>&)>& on_taken) {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    if (closed_) return nullptr;
    for (auto& level : levels_) {
      if (!level.empty()) {
        auto job = std::move(level.front());
        level.pop_front();
        if (on_taken) on_taken(job);
        return job;
      }
    }
    available_.wait(lock);
  }
}

std::shared_ptr<Job> JobQueue::remove(const std::string& request_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto taken = take_if(levels_, [&](const Job& job) { return job.request_id() == request_id; });
  return taken.empty() ? nullptr : taken.front();
}

std::vector<std::shared_ptr<Job>> JobQueue::remove_connection(std::uint64_t connection_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  return take_if(levels_, [&](const Job& job) { return job.connection_id() == connection_id; });
}

std::vector<std::shared_ptr<Job>> JobQueue::remove_expired(Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mutex_);
  return take_if(levels_, [&](const Job& job) { return job.deadline() <= now; });
}

Clock::time_point JobQueue::next_deadline() const {
  std::lock_guard<std::mutex> lock(mutex_);
  Clock::time_point earliest = Clock::time_point::max();
  for (const auto& level : levels_)
    for (const auto& job : level) earliest = std::min(earliest, job->deadline());
  return earliest;
}

std::vector<std::shared_ptr<Job>> JobQueue::close() {
  std::vector<std::shared_ptr<Job>> remaining;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    closed_ = true;
    remaining = take_if(levels_, [](const Job&) { return true; });
  }
  available_.notify_all();
  return remaining;
}

bool JobQueue::contains(const std::string& request_id) const {
  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& level : levels_)
    for (const auto& job : level)
      if (job->request_id() == request_id) return true;
  return false;
}

std::size_t JobQueue::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return levels_[0].size() + levels_[1].size() + levels_[2].size();
}

void JobQueue::set_max_pending(std::size_t max_pending) {
  std::lock_guard<std::mutex> lock(mutex_);
  max_pending_ = max_pending;
}

nlohmann::json JobQueue::describe() const {
  std::lock_guard<std::mutex> lock(mutex_);
  nlohmann::json out = {{"depth", levels_[0].size() + levels_[1].size() + levels_[2].size()},
                        {"max_pending", max_pending_}};
  for (int level = 0; level < 3; ++level) {
    nlohmann::json ids = nlohmann::json::array();
    for (const auto& job : levels_[level]) ids.push_back(job->request_id());
    out[to_string(static_cast<Priority>(level))] = ids;
  }
  return out;
}

}  // namespace sdxlhost::host::runtime
