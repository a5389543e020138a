// A pipeline's cache of patched copies (see patched_sets.hpp).
#include "sdxlhost/pipeline/patched_sets.hpp"

#include <algorithm>
#include <utility>
#include <vector>

namespace sdxlhost::pipeline {

PatchedModels PatchedSets::get(const std::string& key, std::size_t limit, const Build& build, bool* from_cache) {
  if (from_cache) *from_cache = false;
  if (limit == 0) return build();
  std::promise<PatchedModels> promise;
  std::shared_future<PatchedModels> other;  // valid when the key is cached or being built
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = std::find_if(entries_.begin(), entries_.end(), [&](const Entry& e) { return e.key == key; });
    if (it != entries_.end()) {
      entries_.splice(entries_.begin(), entries_, it);
      other = entries_.front().ready;
    } else {
      entries_.push_front(Entry{key, promise.get_future().share(), 0});
    }
  }
  if (other.valid()) {
    // Waited for outside the lock: a copy another job is building holds up only this key.
    try {
      PatchedModels cached = other.get();
      if (from_cache) *from_cache = true;
      return cached;
    } catch (...) {
      // That build failed (and is gone from the list): its job may have been cancelled, which is
      // no reason for this one to fail. Build it here; a bad patch fails again, with our field.
      return get(key, limit, build, from_cache);
    }
  }

  PatchedModels built;
  try {
    built = build();
  } catch (...) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      entries_.remove_if([&](const Entry& e) { return e.key == key; });
    }
    promise.set_exception(std::current_exception());
    throw;
  }
  std::vector<Entry> dropped;  // released after the lock
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& entry : entries_)
      if (entry.key == key) entry.bytes = built.bytes;
    while (entries_.size() > limit) {
      // the least recently used copy that is built (one being built is someone's job)
      auto victim = std::find_if(entries_.rbegin(), entries_.rend(), [](const Entry& e) {
        return e.ready.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
      });
      if (victim == entries_.rend()) break;
      dropped.push_back(std::move(*victim));
      entries_.erase(std::next(victim).base());
    }
  }
  promise.set_value(built);
  return built;
}

std::size_t PatchedSets::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return entries_.size();
}

std::uint64_t PatchedSets::bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::uint64_t total = 0;
  for (const auto& entry : entries_) total += entry.bytes;
  return total;
}

void PatchedSets::clear() {
  std::list<Entry> dropped;
  std::lock_guard<std::mutex> lock(mutex_);
  dropped.swap(entries_);
}

}  // namespace sdxlhost::pipeline
