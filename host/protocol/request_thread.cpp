#include "host/protocol/request_thread.hpp"

#include "host/common/logging.hpp"

namespace sdxlhost::host::protocol {

RequestThread::RequestThread(std::size_t max_queued_bytes, std::size_t max_queued_tasks)
    : max_queued_bytes_(max_queued_bytes), max_queued_tasks_(max_queued_tasks), thread_([this] { run(); }) {}

RequestThread::~RequestThread() { stop(); }

void RequestThread::post(std::function<void()> task, std::size_t bytes) {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [&] {
    return stopping_ || tasks_.empty() ||
           (tasks_.size() < max_queued_tasks_ && queued_bytes_ + bytes <= max_queued_bytes_);
  });
  if (stopping_) return;
  tasks_.emplace_back(std::move(task), bytes);
  queued_bytes_ += bytes;
  changed_.notify_all();
}

void RequestThread::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    tasks_.clear();
    queued_bytes_ = 0;
  }
  changed_.notify_all();
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

void RequestThread::run() {
  for (;;) {
    std::pair<std::function<void()>, std::size_t> task;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [&] { return stopping_ || !tasks_.empty(); });
      if (stopping_) return;
      task = std::move(tasks_.front());
      tasks_.pop_front();
      queued_bytes_ -= task.second;
    }
    changed_.notify_all();  // a blocked post may fit now
    try {
      task.first();
    } catch (const std::exception& error) {  // the dispatcher answers its own errors; never end the thread
      component_logger("protocol")->error("request thread: {}", error.what());
    }
  }
}

}  // namespace sdxlhost::host::protocol
