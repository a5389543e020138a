#include "host/plugins/plugin_manager.hpp"

#include <algorithm>
#include <cstring>
#include <set>
#include <stdexcept>
#include <utility>

#include <boost/dll/shared_library.hpp>
#include <spdlog/logger.h>

#include "host/common/logging.hpp"
#include "sdxlhost/sdk/abi.hpp"
#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/plugin.hpp"
#include "sdxlhost/sdk/registries.hpp"

namespace sdxlhost::host {

namespace fs = std::filesystem;

namespace {
/// This component's logger (stderr; stdout belongs to --stdio mode).
std::shared_ptr<spdlog::logger> logger() { return component_logger("plugins"); }
}  // namespace

/// One mapped plugin library. Shared by every snapshot that uses it; unmapped when the last
/// reference (snapshot, stage pointer, cached model anchor) goes.
class LoadedLibrary {
 public:
  /// Maps `file`; throws std::runtime_error saying why it is not a loadable library.
  explicit LoadedLibrary(const fs::path& file) : file_(file) {
    try {
      library_.load(file, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
    } catch (const std::exception& e) {
      throw std::runtime_error(std::string("not a loadable library: ") + e.what());
    }
  }
  const fs::path& file() const { return file_; }
  const boost::dll::shared_library& library() const { return library_; }

 private:
  fs::path file_;
  boost::dll::shared_library library_;
};

/// A created plugin object with the library its code lives in. Members are destroyed in reverse
/// order: the plugin first (after shutdown()), then the library reference.
struct PluginInstance {
  std::shared_ptr<LoadedLibrary> library;
  std::shared_ptr<sdk::Plugin> plugin;
  sdk::PluginInfo info;

  ~PluginInstance() {
    if (!plugin) return;
    try {
      plugin->shutdown();
    } catch (const std::exception& e) {
      logger()->warn("'{}' threw in shutdown(): {}", info.name, e.what());
    } catch (...) {
      logger()->warn("'{}' threw a non-standard exception in shutdown()", info.name);
    }
    plugin.reset();
  }
};

namespace {


#if defined(_WIN32)
constexpr const char* kLibraryExtension = ".dll";
#elif defined(__APPLE__)
constexpr const char* kLibraryExtension = ".dylib";
#else
constexpr const char* kLibraryExtension = ".so";
#endif
constexpr const char* kAbiSymbol = "sdxlhost_abi_version";
constexpr const char* kBuildIdSymbol = "sdxlhost_build_id";
constexpr const char* kCreateSymbol = "sdxlhost_create_plugin";

/// Why a plugin was refused; the message becomes PluginRecord::reason.
class LoadRefused : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

bool contains(const std::vector<std::string>& items, const std::string& item) {
  return std::find(items.begin(), items.end(), item) != items.end();
}

/// True when the plugin of `record` serves `feature`: its name, what it provides, or a request
/// feature it declares.
bool serves(const PluginRecord& record, const std::string& feature) {
  return record.name == feature || contains(record.provides, feature) ||
         std::any_of(record.request_features.begin(), record.request_features.end(),
                     [&](const sdk::RequestFeature& declared) { return declared.name == feature; });
}

std::vector<fs::path> plugin_files(const fs::path& dir) {
  std::vector<fs::path> files;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    logger()->warn("plugin directory '{}' does not exist; no plugins loaded", dir.string());
    return files;
  }
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.path().extension() == kLibraryExtension && entry.is_regular_file(ec)) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

bool is_enabled(const PluginSettings& settings, const std::string& name) {
  auto it = settings.enabled.find(name);
  return it == settings.enabled.end() ? settings.enable_unlisted : it->second;
}

/// `plugins.config.<name>` with the top-level `device` and `dtype` added where the section
/// does not set them (the plugin's own section wins).
nlohmann::json plugin_config(const PluginSettings& settings, const std::string& name) {
  const auto& configs = settings.plugin_configs;
  nlohmann::json config = nlohmann::json::object();
  if (configs.is_object() && configs.contains(name)) config = configs.at(name);
  if (!config.is_object()) return config;
  if (!config.contains("device")) config["device"] = settings.device;
  if (!config.contains("dtype")) config["dtype"] = settings.dtype;
  return config;
}

/// Checks the entry points, ABI version and build id; creates the plugin object.
std::shared_ptr<sdk::Plugin> create_checked(const boost::dll::shared_library& library) {
  for (const char* symbol : {kAbiSymbol, kBuildIdSymbol, kCreateSymbol})
    if (!library.has(symbol))
      throw LoadRefused(std::string("not a sdxl-host plugin: the library does not export '") +
                        symbol + "' (use SDXLHOST_PLUGIN)");
  const int abi = library.get_alias<sdk::AbiVersionFn>(kAbiSymbol)();
  if (abi != sdk::kAbiVersion)
    throw LoadRefused("ABI version " + std::to_string(abi) + " differs from the host's " +
                      std::to_string(sdk::kAbiVersion) + "; rebuild the plugin against this SDK");
  const char* build_id = library.get_alias<sdk::BuildIdFn>(kBuildIdSymbol)();
  if (!build_id || std::strcmp(build_id, sdk::kBuildId) != 0)
    throw LoadRefused(std::string("built with '") + (build_id ? build_id : "(null)") +
                      "', the host with '" + sdk::kBuildId + "'; rebuild the plugin with the host's toolchain");
  auto plugin = library.get_alias<sdk::CreatePluginFn>(kCreateSymbol)();
  if (!plugin) throw LoadRefused("sdxlhost_create_plugin returned no plugin");
  return plugin;
}

void log_record(const PluginRecord& record) {
  if (record.state == "loaded")
    logger()->info("loaded '{}' {} from {}", record.name, record.version, record.file.string());
  else if (record.state == "disabled")
    logger()->info("'{}' is disabled ({})", record.name, record.reason);
  else
    logger()->error("'{}' failed: {}{}", record.name, record.reason,
                  record.file.empty() ? "" : " [" + record.file.string() + "]");
}

}  // namespace

// ---- PluginSet ------------------------------------------------------------------------------

PluginSet::PluginSet(std::vector<PluginRecord> records,
                     std::vector<std::unique_ptr<PluginInstance>> plugins,
                     std::unique_ptr<sdk::Registries> registries)
    : records_(std::move(records)), plugins_(std::move(plugins)), registries_(std::move(registries)) {
  if (!registries_) registries_ = std::make_unique<sdk::Registries>();
}

PluginSet::PluginSet(std::vector<PluginRecord> records, std::unique_ptr<sdk::Registries> registries)
    : PluginSet(std::move(records), std::vector<std::unique_ptr<PluginInstance>>{},
                std::move(registries)) {}

PluginSet::~PluginSet() {
  registries_.reset();  // objects the plugins registered, while their code is still mapped
  while (!plugins_.empty()) plugins_.pop_back();  // shutdown + release, last loaded first
}

std::vector<sdk::RequestFeature> PluginSet::request_features() const {
  std::vector<sdk::RequestFeature> out = sdk::request_schema_features();
  for (const auto& record : records_)
    for (const auto& feature : record.request_features) {
      const bool known = std::any_of(out.begin(), out.end(), [&](const auto& f) { return f.name == feature.name; });
      if (!known) out.push_back(feature);
    }
  return out;
}

bool PluginSet::feature_enabled(const std::string& feature) const {
  for (const auto& record : records_)
    if (record.state == "loaded" && serves(record, feature) &&
        std::any_of(plugins_.begin(), plugins_.end(), [&](const auto& p) { return p->info.name == record.name; }))
      return true;
  for (const auto& stage : registries_->stages())
    if (stage->feature() == feature) return true;
  return false;
}

std::string PluginSet::feature_config_key(const std::string& feature) const {
  for (const auto& record : records_)
    if (record.state != "loaded" && !record.name.empty() && serves(record, feature))
      return "plugins.enabled." + record.name;
  return "plugins.enabled." + feature;
}

std::string PluginSet::unavailable_reason(const std::string& feature) const {
  for (const auto& record : records_) {
    if (record.state == "loaded" || record.name.empty() || !serves(record, feature)) continue;
    if (record.state == "disabled")
      return "plugin '" + record.name + "' is disabled (enable it with plugins.enabled." + record.name + ")";
    return "plugin '" + record.name + "' failed to load: " + record.reason;
  }
  return "no plugin provides it (install one, or enable it with plugins.enabled." + feature + ")";
}

nlohmann::json PluginSet::describe() const {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& r : records_) {
    std::vector<std::string> stages;
    for (const auto& stage : registries_->stages())
      if (r.state == "loaded" && registries_->stage_owner(stage->name()) == r.name) stages.push_back(stage->name());
    out.push_back({{"name", r.name},
                   {"stages", stages},
                   {"version", r.version},
                   {"description", r.description},
                   {"state", r.state},
                   {"reason", r.reason},
                   {"provides", r.provides},
                   {"requires", r.requires_plugins},
                   {"file", r.file.string()},
                   {"loaded_from", r.loaded_from.string()}});
  }
  return out;
}

std::shared_ptr<const void> PluginSet::stage_anchor(const std::string& stage_name) const {
  const std::string owner = registries_->stage_owner(stage_name);
  for (const auto& instance : plugins_)
    if (instance->info.name == owner) return instance->library;
  return nullptr;
}

std::shared_ptr<const void> PluginSet::anchor() const { return weak_from_this().lock(); }

void PluginSet::preload_model(const std::string& kind, sdk::ModelAccess& models,
                              const std::string& name) const {
  const sdk::ModelPreloader* preloader = registries_->model_preloader(kind);
  if (!preloader)
    throw sdk::Error(sdk::ErrorCode::FeatureDisabled,
                     "no enabled plugin can load models of kind '" + kind + "'", "data.kind");
  ScopedCodeAnchor scope(anchor());
  (*preloader)(models, name);
}

// ---- PluginManager --------------------------------------------------------------------------

PluginManager::PluginManager(PluginSettings settings)
    : settings_(std::move(settings)),
      current_(std::make_shared<PluginSet>(std::vector<PluginRecord>{},
                                           std::vector<std::unique_ptr<PluginInstance>>{},
                                           std::make_unique<sdk::Registries>())),
      run_dir_(settings_.run_dir) {}

PluginManager::~PluginManager() = default;

void PluginManager::load() {
  std::lock_guard<std::mutex> serial(load_mutex_);
  auto snapshot = build_snapshot(settings());
  std::shared_ptr<const PluginSet> previous;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    previous = std::exchange(current_, std::move(snapshot));
  }
  // `previous` is released here, outside the lock (unloads libraries no job still holds).
}

void PluginManager::reconfigure(PluginSettings settings) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    settings_ = std::move(settings);
  }
  load();
}

std::shared_ptr<const PluginSet> PluginManager::current() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return current_;
}

nlohmann::json PluginManager::describe() const { return current()->describe(); }

PluginSettings PluginManager::settings() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return settings_;
}

std::shared_ptr<LoadedLibrary> PluginManager::open_library(const fs::path& file, fs::path& loaded_from) {
  // Read once, checked, copied: the loader never sees a file that is cut short or changing.
  const fs::path key = run_dir_.copy(file);
  loaded_from = key;
  for (auto it = libraries_.begin(); it != libraries_.end();)
    it = it->second.expired() ? libraries_.erase(it) : std::next(it);
  if (auto existing = libraries_[key].lock()) return existing;
  auto library = std::make_shared<LoadedLibrary>(key);
  libraries_[key] = library;
  return library;
}

PluginRecord PluginManager::probe(const fs::path& file, const PluginSettings& settings,
                                  std::unique_ptr<PluginInstance>& instance) {
  PluginRecord record;
  record.file = file;
  record.name = file.stem().string();
  // Declared outside the try block so that an exception object thrown by plugin code is
  // destroyed before the library can be unmapped.
  auto candidate = std::make_unique<PluginInstance>();
  try {
    candidate->library = open_library(file, record.loaded_from);
    candidate->plugin = create_checked(candidate->library->library());
    candidate->info = candidate->plugin->info();
    const auto& info = candidate->info;
    if (info.name.empty()) throw LoadRefused("the plugin reports an empty name");
    record.name = info.name;
    record.version = info.version;
    record.description = info.description;
    record.provides = info.provides;
    record.requires_plugins = info.requires_plugins;
    record.request_features = info.request_features;
    if (!is_enabled(settings, info.name)) {
      record.state = "disabled";
      record.reason = settings.enabled.count(info.name)
                          ? "disabled by plugins.enabled." + info.name
                          : "not listed in plugins.enabled and unlisted plugins are disabled";
      return record;  // `candidate` (plugin, then library) is released here
    }
    record.state = "pending";
    instance = std::move(candidate);
  } catch (const std::exception& e) {
    record.state = "failed";
    record.reason = e.what();
  } catch (...) {
    record.state = "failed";
    record.reason = "the plugin threw a non-standard exception while loading";
  }
  return record;
}

namespace {

/// A plugin that passed the checks and waits for initialize(), with its record's index.
struct PendingPlugin {
  std::unique_ptr<PluginInstance> instance;
  std::size_t record = 0;
};

/// Records a failure for every name the config switches on that no file provides.
void report_missing_enabled(const PluginSettings& settings, std::vector<PluginRecord>& records) {
  for (const auto& [name, on] : settings.enabled) {
    const bool found = std::any_of(records.begin(), records.end(),
                                   [&](const PluginRecord& r) { return r.name == name; });
    if (!on || found) continue;
    PluginRecord missing;
    missing.name = name;
    missing.state = "failed";
    missing.reason = "enabled in plugins.enabled but no plugin of that name is in '" +
                     settings.dir.string() + "'";
    records.push_back(std::move(missing));
  }
}

/// True when a plugin named `need` (or providing it) is among `loaded`.
bool requirement_loaded(const std::string& need, const std::vector<std::unique_ptr<PluginInstance>>& loaded) {
  return std::any_of(loaded.begin(), loaded.end(),
                     [&](const auto& l) { return l->info.name == need || contains(l->info.provides, need); });
}

/// True when every plugin `instance` requires is among `loaded` (by name or provides).
bool requirements_met(const PluginInstance& instance,
                      const std::vector<std::unique_ptr<PluginInstance>>& loaded) {
  for (const auto& need : instance.info.requires_plugins) {
    const bool ok = std::any_of(loaded.begin(), loaded.end(), [&](const auto& l) {
      return l->info.name == need || contains(l->info.provides, need);
    });
    if (!ok) return false;
  }
  return true;
}

/// Calls initialize() as one transaction: on failure, what the plugin registered is dropped
/// (while its code is still mapped). Returns the failure, empty on success.
std::string initialize_plugin(PluginInstance& instance, const nlohmann::json& config,
                              sdk::Registries& registries) {
  const sdk::Registries before = registries;
  std::string failure;
  try {
    registries.set_current_plugin(instance.info.name);
    instance.plugin->initialize(config, registries);
  } catch (const std::exception& e) {
    failure = std::string("initialize() failed: ") + e.what();
  } catch (...) {
    failure = "initialize() threw a non-standard exception";
  }
  if (!failure.empty()) registries = before;
  registries.set_current_plugin("");
  return failure;
}

/// Initializes pending plugins, each after those it requires; moves the successful ones to
/// `loaded` and records every outcome.
void initialize_in_dependency_order(std::vector<PendingPlugin>& pending, const PluginSettings& settings,
                                    sdk::Registries& registries, std::vector<PluginRecord>& records,
                                    std::vector<std::unique_ptr<PluginInstance>>& loaded) {
  for (bool progress = true; progress;) {
    progress = false;
    for (auto& candidate : pending) {
      if (!candidate.instance || !requirements_met(*candidate.instance, loaded)) continue;
      progress = true;
      PluginRecord& record = records[candidate.record];
      auto instance = std::move(candidate.instance);
      const std::string failure =
          initialize_plugin(*instance, plugin_config(settings, record.name), registries);
      record.state = failure.empty() ? "loaded" : "failed";
      record.reason = failure;
      if (failure.empty()) loaded.push_back(std::move(instance));
    }
  }
  for (auto& candidate : pending) {
    if (!candidate.instance) continue;
    // Name only the requirements that are not loaded, each with why (an operator who switched
    // `schedulers` off must read that, not "enable sdxl").
    std::string missing;
    for (const auto& need : candidate.instance->info.requires_plugins) {
      if (requirement_loaded(need, loaded)) continue;
      std::string why = "not installed in plugins.dir";
      for (const auto& other : records)
        if (other.name == need || contains(other.provides, need)) {
          why = other.state == "disabled" ? "disabled: plugins.enabled." + other.name + " is false"
                : other.state == "failed" ? "failed to load"
                                          : "not loaded";
          break;
        }
      missing += (missing.empty() ? "" : ", ") + need + " (" + why + ")";
    }
    records[candidate.record].state = "failed";
    records[candidate.record].reason = "requires plugin(s) that are not loaded: " + missing;
    candidate.instance.reset();
  }
}

}  // namespace

std::shared_ptr<const PluginSet> PluginManager::build_snapshot(const PluginSettings& settings) {
  std::vector<PluginRecord> records;
  std::vector<PendingPlugin> pending;
  std::set<std::string> seen_names;
  for (const auto& file : plugin_files(settings.dir)) {
    std::unique_ptr<PluginInstance> instance;
    PluginRecord record = probe(file, settings, instance);
    if (instance && !seen_names.insert(record.name).second) {
      record.state = "failed";
      record.reason = "another plugin file already has the name '" + record.name + "'";
      instance.reset();
    }
    if (instance) pending.push_back({std::move(instance), records.size()});
    records.push_back(std::move(record));
  }
  report_missing_enabled(settings, records);

  auto registries = std::make_unique<sdk::Registries>();
  std::vector<std::unique_ptr<PluginInstance>> loaded;
  initialize_in_dependency_order(pending, settings, *registries, records, loaded);
  for (const auto& record : records) log_record(record);
  return std::make_shared<PluginSet>(std::move(records), std::move(loaded), std::move(registries));
}

}  // namespace sdxlhost::host
