#include "host/models/job_models.hpp"

#include <algorithm>

namespace sdxlhost::host {

std::shared_ptr<void> JobModels::load(const std::string& kind, const std::string& name, const std::string& variant,
                                      const std::string& field, const std::type_info& type,
                                      const sdk::ModelLoadFn& load) {
  std::shared_ptr<void> object = store_.load(kind, name, variant, field, type, load);
  std::lock_guard<std::mutex> lock(mutex_);
  const bool known = std::any_of(pins_.begin(), pins_.end(), [&](const auto& pin) { return pin == object; });
  if (!known) pins_.push_back(object);
  return object;
}

std::size_t JobModels::pinned() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return pins_.size();
}

}  // namespace sdxlhost::host
