#include "host/models/model_store.hpp"

#include <cxxabi.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <future>
#include <tuple>
#include <utility>

#include <spdlog/logger.h>

#include "host/common/logging.hpp"
#include "host/common/memory.hpp"
#include "host/common/paths.hpp"
#include "host/plugins/code_anchor.hpp"
#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/relative_path.hpp"

namespace sdxlhost::host {

namespace fs = std::filesystem;

namespace {
/// This component's logger (stderr; stdout belongs to --stdio mode).
std::shared_ptr<spdlog::logger> logger() { return component_logger("models"); }
}  // namespace
using sdk::Error;
using sdk::ErrorCode;

namespace {

constexpr const char* kSafetensors = ".safetensors";

/// A cached object together with the code anchor (plugin library) its destructor needs.
/// `object` is declared last, so it is destroyed first.
struct Holder {
  std::shared_ptr<const void> anchor;
  std::shared_ptr<void> object;
};
using HolderPtr = std::shared_ptr<Holder>;

bool is_known_kind(const std::string& kind) {
  return std::any_of(std::begin(sdk::kModelKinds), std::end(sdk::kModelKinds),
                     [&](const char* k) { return kind == k; });
}

/// Refuses names that could leave their folder, before touching the file system.
void validate_name(const std::string& name, const std::string& field) {
  sdk::RelativePathRules rules;
  rules.subject = "model name ";
  rules.max_bytes = 1024;
  rules.require_utf8 = false;  // a file name in a legacy encoding is still a name
  sdk::check_relative_path(name, field, rules);
}

std::uint64_t size_on_disk(const fs::path& path) {
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) return fs::file_size(path, ec);
  std::uint64_t total = 0;
  for (fs::recursive_directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec))
    if (it->is_regular_file(ec)) total += it->file_size(ec);
  return total;
}

/// Runs `loader` with the thread's code anchor; every failure becomes Error(ModelLoadError)
/// naming `field` (an sdk::Error from the loader passes through).
std::pair<HolderPtr, sdk::CachedModel> run_loader(const sdk::ModelLoadFn& loader, const fs::path& path,
                                                  const std::string& kind, const std::string& name,
                                                  const std::string& field) {
  const std::string what = kind + " '" + name + "'";
  try {
    auto holder = std::make_shared<Holder>();
    holder->anchor = current_code_anchor();
    sdk::CachedModel model = loader(path);
    if (!model.object) throw Error(ErrorCode::ModelLoadError, "loading " + what + " produced nothing", field);
    holder->object = std::move(model.object);
    return {holder, std::move(model)};
  } catch (const Error& e) {
    // Readers deep in the SDK know the file, not the request field that named it: add it.
    const bool about_the_model =
        e.code() == ErrorCode::ModelLoadError || e.code() == ErrorCode::ModelNotFound;
    if (about_the_model && e.field().empty() && !field.empty()) throw Error(e.code(), e.message(), field);
    throw;
  } catch (const std::exception& e) {
    throw Error(ErrorCode::ModelLoadError, "cannot load " + what + ": " + e.what(), field);
  } catch (...) {
    throw Error(ErrorCode::ModelLoadError, "cannot load " + what, field);
  }
}

/// What a model's files looked like when it was loaded: size, modification time and inode of
/// the file (of every file, for a folder model). A change means the cached object may refer to
/// bytes that are gone (a truncated mmapped file faults with SIGBUS when touched).
struct FileStamp {
  std::uint64_t bytes = 0;
  std::int64_t newest_ns = 0;
  std::uint64_t identity = 0;  ///< inode(s) and file count mixed
  bool operator==(const FileStamp& o) const {
    return bytes == o.bytes && newest_ns == o.newest_ns && identity == o.identity;
  }
  bool operator!=(const FileStamp& o) const { return !(*this == o); }
};

void add_file(FileStamp& stamp, const fs::path& file) {
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) return;
  stamp.bytes += static_cast<std::uint64_t>(st.st_size);
  stamp.newest_ns = std::max<std::int64_t>(stamp.newest_ns, st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec);
  stamp.identity = stamp.identity * 1099511628211ULL + static_cast<std::uint64_t>(st.st_ino) + 1;
}

FileStamp stamp_of(const fs::path& path) {
  FileStamp stamp;
  std::error_code ec;
  if (!fs::is_directory(path, ec)) {
    add_file(stamp, path);
    return stamp;
  }
  for (fs::recursive_directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec))
    if (it->is_regular_file(ec)) add_file(stamp, it->path());
  return stamp;
}

/// The type's name as the compiler writes it, demangled where possible ("sdxlhost::nn::UNet...").
std::string type_name(const std::type_info& type) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> demangled(abi::__cxa_demangle(type.name(), nullptr, nullptr, &status),
                                                   std::free);
  return status == 0 && demangled ? demangled.get() : type.name();
}

std::shared_ptr<void> share_object(const HolderPtr& holder) {
  // Aliasing pointer: shares the holder's control block, so use_count() shows jobs using it.
  return std::shared_ptr<void>(holder, holder->object.get());
}

}  // namespace

struct ModelStore::Entry {
  std::string kind;
  std::string name;
  std::string variant;
  fs::path path;
  std::uint64_t bytes = 0;                     ///< as loaded
  std::function<std::uint64_t()> extra_bytes;  ///< what the object keeps since (may be empty)
  const std::type_info* type = nullptr;        ///< what the object is (ModelAccess::load)
  FileStamp stamp;                             ///< the files as they were when loading began
  HolderPtr holder;                            ///< null while loading
  std::shared_future<HolderPtr> ready;         ///< valid while loading

  bool loaded() const { return holder != nullptr; }
  /// A job holds the object (the cache's own reference is the first).
  bool in_use() const { return holder && holder.use_count() > 1; }
  /// The bytes the cache counts for this entry now.
  std::uint64_t bytes_now() const { return bytes + (extra_bytes ? extra_bytes() : 0); }
  /// Throws when the object is asked for as another type than it was cached as.
  void check_type(const std::type_info& asked, const std::string& field) const {
    if (*type == asked) return;
    throw Error(ErrorCode::InternalError,
                kind + " '" + name + "' (" + variant + ") is cached as " + type_name(*type) + " but was asked for as " +
                    type_name(asked) + ": two plugins use the variant name '" + variant +
                    "' for different objects; give each its own",
                field);
  }
};

/// MemAvailable of /proc/meminfo in bytes; 0 when unreadable.
static std::uint64_t mem_available_bytes() {
  std::ifstream meminfo("/proc/meminfo");
  for (std::string line; std::getline(meminfo, line);)
    if (line.rfind("MemAvailable:", 0) == 0) return std::stoull(line.substr(13)) * 1024;
  return 0;
}

ModelStore::ModelStore(ModelStoreSettings settings) : settings_(std::move(settings)) {
  if (!settings_.available_memory) settings_.available_memory = mem_available_bytes;
}

ModelStore::~ModelStore() = default;

fs::path ModelStore::kind_folder(const std::string& kind) const {
  if (!is_known_kind(kind))
    throw Error(ErrorCode::InternalError, "unknown model kind '" + kind + "'");
  return settings_.models_root / kind;
}

fs::path ModelStore::resolve(const std::string& kind, const std::string& name,
                             const std::string& field) const {
  const fs::path folder = kind_folder(kind);
  validate_name(name, field);
  std::error_code ec;
  const fs::path real_folder = fs::canonical(folder, ec);
  if (!ec) {
    for (const fs::path candidate : {folder / name, folder / (name + kSafetensors)}) {
      if (!fs::exists(candidate, ec)) continue;
      const fs::path real = fs::canonical(candidate, ec);
      if (ec) continue;
      if (!is_within(real, real_folder) || real == real_folder)
        throw Error(ErrorCode::ValidationError,
                    "model name '" + name + "' resolves outside the " + kind + " folder", field);
      return real;
    }
  }
  throw Error(ErrorCode::ModelNotFound,
              "no model named '" + name + "' in " + kind + "/ (list_models shows what is available)",
              field);
}

std::shared_ptr<void> ModelStore::load(const std::string& kind, const std::string& name,
                                       const std::string& variant, const std::string& field,
                                       const std::type_info& type, const sdk::ModelLoadFn& loader) {
  const fs::path path = resolve(kind, name, field);
  const std::string key = path.string() + '\n' + variant;
  const FileStamp stamp = stamp_of(path);

  std::promise<HolderPtr> promise;
  std::shared_future<HolderPtr> other_load;  // valid when another call is loading this key
  std::shared_ptr<Entry> stale;              // released after the lock (jobs may still hold it)
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = entries_.find(key);
    if (it != entries_.end() && it->second->loaded() && it->second->stamp != stamp) {
      // Replaced or truncated on disk since it was loaded: the cached object must not be used
      // (its mapped weights may be gone); load the file as it is now. Jobs holding the old
      // object keep it until they finish.
      logger()->warn("{} '{}' changed on disk since it was loaded; loading it again", kind, name);
      stale = it->second;
      entries_.erase(it);
      lru_.remove(key);
      it = entries_.end();
    }
    if (it != entries_.end()) {
      const auto& existing = it->second;
      existing->check_type(type, field);
      ++hits_;
      if (existing->loaded()) {
        lru_.remove(key);
        lru_.push_front(key);
        return share_object(existing->holder);
      }
      other_load = existing->ready;
    } else {
      ++misses_;
      auto entry = std::make_shared<Entry>();
      entry->kind = kind;
      entry->name = name;
      entry->variant = variant;
      entry->path = path;
      entry->stamp = stamp;
      entry->type = &type;
      entry->ready = promise.get_future().share();
      entries_[key] = entry;
    }
  }
  if (other_load.valid()) return share_object(other_load.get());  // its result or its error

  {
    std::vector<std::shared_ptr<Entry>> evicted;  // destroyed after the lock is released
    {
      std::lock_guard<std::mutex> lock(mutex_);
      make_room_for(size_on_disk(path), kind + " '" + name + "'", evicted);
    }
    if (!evicted.empty()) {
      evicted.clear();
      release_free_memory();  // before the new model's weights are allocated
    }
  }
  HolderPtr holder;
  sdk::CachedModel loaded;
  try {
    std::tie(holder, loaded) = run_loader(loader, path, kind, name, field);
  } catch (...) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      entries_.erase(key);
    }
    promise.set_exception(std::current_exception());  // waiters get the same error
    throw;
  }

  std::shared_ptr<void> result = share_object(holder);
  std::vector<std::shared_ptr<Entry>> evicted;  // destroyed after the lock is released
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto& stored = entries_[key];
    stored->holder = holder;
    stored->bytes = loaded.bytes;
    stored->extra_bytes = std::move(loaded.extra_bytes);
    stored->ready = {};
    lru_.push_front(key);
    evict_to_budget(evicted);
  }
  promise.set_value(std::move(holder));
  if (!evicted.empty()) {
    evicted.clear();
    release_free_memory();
  }
  return result;
}

std::uint64_t ModelStore::loaded_bytes() const {
  std::uint64_t bytes = 0;
  for (const auto& [key, entry] : entries_)
    if (entry->loaded()) bytes += entry->bytes_now();
  return bytes;
}

bool ModelStore::evict_one(const std::string& reason, const std::string& detail,
                           std::vector<std::shared_ptr<Entry>>& evicted) {
  auto victim = std::find_if(lru_.rbegin(), lru_.rend(), [&](const std::string& key) {
    const auto& entry = entries_.at(key);
    return entry->loaded() && !entry->in_use();
  });
  if (victim == lru_.rend()) return false;
  const std::string key = *victim;
  const auto& entry = entries_.at(key);
  logger()->info("evicting {} '{}' ({}): {}", entry->kind, entry->name, entry->variant, detail);
  recent_evictions_.push_front({{"kind", entry->kind}, {"name", entry->name}, {"variant", entry->variant},
                                {"bytes", entry->bytes_now()}, {"reason", reason}, {"detail", detail}});
  if (recent_evictions_.size() > 16) recent_evictions_.pop_back();
  evicted.push_back(entry);
  entries_.erase(key);
  lru_.erase(std::next(victim).base());
  ++evictions_;
  return true;
}

void ModelStore::evict_to_budget(std::vector<std::shared_ptr<Entry>>& evicted) {
  for (;;) {
    std::size_t count = 0;
    for (const auto& [key, entry] : entries_)
      if (entry->loaded()) ++count;
    const std::uint64_t bytes = loaded_bytes();
    std::string reason, detail;
    if (settings_.max_models && count > settings_.max_models) {
      reason = "max_models";
      detail = std::to_string(count) + " models loaded, cache.max_models = " + std::to_string(settings_.max_models);
    } else if (settings_.max_bytes && bytes > settings_.max_bytes) {
      reason = "max_bytes";
      detail = std::to_string(bytes) + " bytes loaded, cache.max_bytes = " + std::to_string(settings_.max_bytes);
    } else {
      return;
    }
    if (!evict_one(reason, detail, evicted)) {
      logger()->warn("cache over budget ({}), but every loaded model is in use", detail);
      return;
    }
  }
}

void ModelStore::make_room_for(std::uint64_t incoming, const std::string& what,
                               std::vector<std::shared_ptr<Entry>>& evicted) {
  if (settings_.max_memory_fraction <= 0 || !settings_.available_memory) return;
  const std::uint64_t available = settings_.available_memory();
  if (available == 0) return;  // unknown
  // What the cache may use: what the system still has plus what the cache holds (it can give
  // that back by evicting), times the fraction.
  const double budget = settings_.max_memory_fraction * static_cast<double>(available + loaded_bytes());
  while (static_cast<double>(loaded_bytes() + incoming) > budget) {
    const std::string detail = "loading " + what + " (" + std::to_string(incoming) + " bytes on disk) with " +
                               std::to_string(loaded_bytes()) + " bytes cached would pass cache.max_memory_fraction " +
                               std::to_string(settings_.max_memory_fraction) + " of " +
                               std::to_string(available + loaded_bytes()) + " bytes";
    if (!evict_one("max_memory_fraction", detail, evicted)) {
      logger()->warn("{}; every cached model is in use, loading anyway", detail);
      return;
    }
  }
}

nlohmann::json ModelStore::list_models() const {
  nlohmann::json out = nlohmann::json::object();
  std::lock_guard<std::mutex> lock(mutex_);
  for (const char* kind : sdk::kModelKinds) {
    nlohmann::json models = nlohmann::json::array();
    const fs::path folder = settings_.models_root / kind;
    std::error_code ec;
    const fs::path real_folder = fs::canonical(folder, ec);
    if (!ec) {
      for (const auto& item : fs::directory_iterator(real_folder, ec)) {
        const std::string file_name = item.path().filename().string();
        if (file_name.empty() || file_name.front() == '.') continue;
        std::error_code item_ec;
        const fs::path real = fs::canonical(item.path(), item_ec);
        if (item_ec || !is_within(real, real_folder)) continue;  // dangling or escaping link
        const bool is_file = fs::is_regular_file(real, item_ec);
        if (!is_file && !fs::is_directory(real, item_ec)) continue;
        std::string name = file_name;
        if (is_file && item.path().extension() == kSafetensors) name = item.path().stem().string();
        const bool loaded = std::any_of(entries_.begin(), entries_.end(), [&](const auto& kv) {
          return kv.second->loaded() && kv.second->path == real;
        });
        models.push_back({{"name", name}, {"path", real.string()},
                          {"size_bytes", size_on_disk(real)}, {"loaded", loaded}});
      }
    }
    std::sort(models.begin(), models.end(),
              [](const nlohmann::json& a, const nlohmann::json& b) { return a["name"] < b["name"]; });
    out[kind] = std::move(models);
  }
  return out;
}

bool ModelStore::unload(const std::string& kind, const std::string& name, const std::string& field) {
  const fs::path path = resolve(kind, name, field);
  std::vector<std::shared_ptr<Entry>> dropped;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<std::string> keys;
    for (const auto& [key, entry] : entries_) {
      if (entry->path != path) continue;
      if (!entry->loaded())
        throw Error(ErrorCode::ValidationError, kind + " '" + name + "' is being loaded", field);
      if (entry->in_use())
        throw Error(ErrorCode::ValidationError,
                    kind + " '" + name + "' is in use by a running job", field);
      keys.push_back(key);
    }
    for (const auto& key : keys) {
      dropped.push_back(entries_[key]);
      entries_.erase(key);
      lru_.remove(key);
    }
  }
  const bool any = !dropped.empty();
  dropped.clear();          // the objects go now (unless a job still shares them)...
  release_free_memory();    // ...and their pages go back to the system
  return any;
}

nlohmann::json ModelStore::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::size_t count = 0;
  std::uint64_t bytes = 0;
  nlohmann::json models = nlohmann::json::array();
  for (const auto& key : lru_) {
    const auto& entry = *entries_.at(key);
    ++count;
    const std::uint64_t entry_bytes = entry.bytes_now();
    bytes += entry_bytes;
    models.push_back({{"kind", entry.kind}, {"name", entry.name}, {"variant", entry.variant},
                      {"bytes", entry_bytes}, {"in_use", entry.in_use()}});
  }
  nlohmann::json recent = nlohmann::json::array();
  for (const auto& eviction : recent_evictions_) recent.push_back(eviction);
  return {{"loaded_models", count},     {"loaded_bytes", bytes},
          {"max_models", settings_.max_models}, {"max_bytes", settings_.max_bytes},
          {"max_memory_fraction", settings_.max_memory_fraction},
          {"hits", hits_},              {"misses", misses_},
          {"evictions", evictions_},    {"models", models},
          {"recent_evictions", recent}};
}

void ModelStore::drop_all() {
  std::vector<std::shared_ptr<Entry>> dropped;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = entries_.begin(); it != entries_.end();) {
      if (it->second->loaded()) {
        dropped.push_back(it->second);
        it = entries_.erase(it);
      } else {
        ++it;
      }
    }
    lru_.clear();
  }
  dropped.clear();
  release_free_memory();
}

}  // namespace sdxlhost::host
