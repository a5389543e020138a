#pragma once
/// @file test_model_access.hpp
/// Shared by the tests that drive stages without a host (sdxl, controlnet): an sdk::ModelAccess
/// that resolves names to fixed paths and caches loaded objects like the host's model cache.

#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/models.hpp"

namespace sdxlhost::test_support {

/// Resolves "kind/name" through `paths`; loads each (kind, name, variant) once.
class TestModels : public sdk::ModelAccess {
 public:
  std::map<std::string, std::filesystem::path> paths;  ///< "kind/name" -> path
  int loads = 0;                                        ///< loader calls (cache misses)

  std::filesystem::path resolve(const std::string& kind, const std::string& name,
                                const std::string& field) const override {
    auto it = paths.find(kind + "/" + name);
    if (it == paths.end()) throw sdk::Error(sdk::ErrorCode::ModelNotFound, "no model " + name, field);
    return it->second;
  }
  std::shared_ptr<void> load(const std::string& kind, const std::string& name, const std::string& variant,
                             const std::string& field, const std::type_info&, const sdk::ModelLoadFn& load) override {
    std::lock_guard<std::mutex> lock(mutex_);
    const std::string key = kind + "/" + name + "/" + variant;
    auto it = cache_.find(key);
    if (it != cache_.end()) return it->second;
    ++loads;
    auto object = load(resolve(kind, name, field)).object;
    cache_[key] = object;
    return object;
  }

 private:
  std::mutex mutex_;
  std::map<std::string, std::shared_ptr<void>> cache_;
};

}  // namespace sdxlhost::test_support
