#pragma once
/// @file model_store.hpp
/// Resolves model names under models_root/{checkpoints,loras,controlnet,vae,upscalers}/ (a
/// NAME file, NAME.safetensors, or a NAME folder), refusing names that escape their folder, and
/// caches loaded objects in an LRU bounded by count and bytes. Only entries no job holds are
/// evicted; concurrent loads of the same (file, variant) load once.
/// Thread-safety: every method may be called from any thread.

#include <cstdint>
#include <filesystem>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sdxlhost/sdk/models.hpp"

namespace sdxlhost::host {

/// The `models_root` and `cache.*` configuration.
struct ModelStoreSettings {
  std::filesystem::path models_root;
  std::size_t max_models = 4;    ///< `cache.max_models`: loaded objects kept at most (0 = unbounded)
  std::uint64_t max_bytes = 0;   ///< `cache.max_bytes`: bytes kept at most (0 = unbounded)
};

/// The host's sdk::ModelAccess: sandboxed resolver + LRU cache.
class ModelStore : public sdk::ModelAccess {
 public:
  explicit ModelStore(ModelStoreSettings settings);
  ~ModelStore() override;

  /// See sdk::ModelAccess::resolve.
  std::filesystem::path resolve(const std::string& kind, const std::string& name,
                                const std::string& field) const override;
  /// See sdk::ModelAccess::load. The cache entry also keeps current_code_anchor() (the plugin
  /// library whose code made the object) alive until the object is gone.
  std::shared_ptr<void> load(const std::string& kind, const std::string& name,
                             const std::string& variant, const std::string& field,
                             const sdk::ModelLoadFn& load) override;

  /// {"checkpoints":[{name,path,size_bytes,loaded}], "loras":[...], ...} for every kind.
  nlohmann::json list_models() const;
  /// Drops every cached object of (kind, name). False when none is loaded; throws
  /// Error(ValidationError, field) when a job is using it.
  bool unload(const std::string& kind, const std::string& name,
              const std::string& field = "data.name");
  /// {loaded_models, loaded_bytes, max_models, max_bytes, hits, misses, evictions}.
  nlohmann::json stats() const;
  /// Forgets every cached object (objects held by jobs live until the jobs release them).
  void drop_all();

  struct Entry;  ///< one cache slot (defined in model_store.cpp)

 private:
  void evict_to_budget(std::vector<std::shared_ptr<Entry>>& evicted);
  std::filesystem::path kind_folder(const std::string& kind) const;

  ModelStoreSettings settings_;
  mutable std::mutex mutex_;
  std::map<std::string, std::shared_ptr<Entry>> entries_;  // key: canonical path + '\n' + variant
  std::list<std::string> lru_;                              // front = most recently used
  std::uint64_t hits_ = 0, misses_ = 0, evictions_ = 0;
};

}  // namespace sdxlhost::host
