#pragma once
/// @file model_store.hpp
/// Resolves model names under models_root/<kind>/ (sdk::kModelKinds) (a
/// NAME file, NAME.safetensors, or a NAME folder), refusing names that escape their folder, and
/// caches loaded objects in an LRU bounded by count and bytes. Only entries no job holds are
/// evicted; concurrent loads of the same (file, variant) load once.
/// Thread-safety: every method may be called from any thread.

#include <cstdint>
#include <deque>
#include <functional>
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
  std::size_t max_models = 3;    ///< `cache.max_models`: loaded objects kept at most (0 = unbounded)
  std::uint64_t max_bytes = 0;   ///< `cache.max_bytes`: bytes kept at most (0 = unbounded)
  /// `cache.max_memory_fraction`: before a load, least-recently-used models no job holds are
  /// evicted until the cache's bytes plus the new model's size on disk fit in this fraction of
  /// the memory the cache may use (what the system has available + what the cache holds).
  /// 0 = off.
  double max_memory_fraction = 0.8;
  /// Bytes the system can still give (default: MemAvailable of /proc/meminfo; 0 = unknown,
  /// which turns the fraction check off). The host sets it to the CUDA device's free memory
  /// when `device` is a GPU (host_service.cpp); replaceable for tests.
  std::function<std::uint64_t()> available_memory;
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
  /// library whose code made the object) alive until the object is gone, and `type`: a later
  /// call for the same (kind, name, variant) with another type is refused (InternalError).
  std::shared_ptr<void> load(const std::string& kind, const std::string& name,
                             const std::string& variant, const std::string& field,
                             const std::type_info& type, const sdk::ModelLoadFn& load) override;

  /// {"<kind>":[{name,path,size_bytes,loaded}], ...} for every sdk::kModelKinds entry.
  nlohmann::json list_models() const;
  /// Drops every cached object of (kind, name). False when none is loaded; throws
  /// Error(ValidationError, field) when a job is using it.
  bool unload(const std::string& kind, const std::string& name,
              const std::string& field = "data.name");
  /// {loaded_models, loaded_bytes, max_models, max_bytes, max_memory_fraction, hits, misses,
  ///  evictions, models: [{kind, name, variant, bytes, in_use}] (bytes: as loaded plus what the
  ///  object keeps since, CachedModel::extra_bytes), recent_evictions: [{kind, name,
  ///  variant, bytes, reason: max_models | max_bytes | max_memory_fraction, detail}]}.
  nlohmann::json stats() const;
  /// Forgets every cached object (objects held by jobs live until the jobs release them).
  void drop_all();

  struct Entry;  ///< one cache slot (defined in model_store.cpp)

 private:
  void evict_to_budget(std::vector<std::shared_ptr<Entry>>& evicted);
  /// Before loading `incoming` bytes: evicts for cache.max_memory_fraction (see the setting).
  void make_room_for(std::uint64_t incoming, const std::string& what, std::vector<std::shared_ptr<Entry>>& evicted);
  /// Evicts the least recently used entry no job holds; false when there is none.
  bool evict_one(const std::string& reason, const std::string& detail, std::vector<std::shared_ptr<Entry>>& evicted);
  std::uint64_t loaded_bytes() const;
  std::filesystem::path kind_folder(const std::string& kind) const;

  ModelStoreSettings settings_;
  mutable std::mutex mutex_;
  std::map<std::string, std::shared_ptr<Entry>> entries_;  // key: canonical path + '\n' + variant
  std::list<std::string> lru_;                              // front = most recently used
  std::uint64_t hits_ = 0, misses_ = 0, evictions_ = 0;
  std::deque<nlohmann::json> recent_evictions_;  // newest first, for `status`
};

}  // namespace sdxlhost::host
