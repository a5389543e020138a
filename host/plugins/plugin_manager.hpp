#pragma once
/// @file plugin_manager.hpp
/// Loads feature plugins (shared libraries) with Boost.DLL and keeps immutable snapshots of the
/// loaded set. A job holds `std::shared_ptr<const PluginSet>` for its whole run; `reconfigure`
/// builds a new snapshot while running jobs finish on theirs. A plugin library is unmapped only
/// when no snapshot (hence no job, no stage pointer, no cached model it created) refers to it.
/// A bad plugin (missing, not a library, cut short, no entry points, other ABI/build, throws in
/// initialize) is reported in `describe()` with state "failed" and a reason; the others keep
/// working. Every library is loaded from a private, checked copy (plugin_file.hpp), never from
/// `plugins.dir` itself, so replacing or truncating a file there cannot touch a mapped plugin.

#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "host/plugins/code_anchor.hpp"
#include "host/plugins/plugin_file.hpp"
#include "sdxlhost/sdk/request_features.hpp"

// Declared only: the registries' stages, schedulers and hooks carry ATen types, which the host
// files that merely hold a snapshot need not compile (include sdxlhost/sdk/registries.hpp to use
// them).
namespace sdxlhost::sdk {
class ModelAccess;
class Registries;
}  // namespace sdxlhost::sdk

namespace sdxlhost::host {

/// The `plugins.*` section of the configuration.
struct PluginSettings {
  std::filesystem::path dir;           ///< `plugins.dir`: scanned for *.so files
  std::map<std::string, bool> enabled; ///< `plugins.enabled.<name>` (name = PluginInfo::name)
  bool enable_unlisted = true;         ///< whether plugins absent from `enabled` are loaded
  nlohmann::json plugin_configs = nlohmann::json::object();  ///< `plugins.config` (name -> object)
  std::string device = "cpu";          ///< top-level `device`: each plugin's config gets it unless its section sets one
  std::string dtype = "fp32";          ///< top-level `dtype` (fp32 | bf16 | fp16): same rule as `device`
  /// `plugins.run_dir`: base folder of the private copies plugins are loaded from (empty: the
  /// default of PluginRunDir). Read once, by the PluginManager's constructor.
  std::filesystem::path run_dir;
};

/// What happened to one plugin file (or one name the config enables but no file provides).
struct PluginRecord {
  std::string name;      ///< PluginInfo::name, or the file stem when the library could not be read
  std::string version;
  std::string description;
  std::string state;     ///< "loaded" | "disabled" | "failed"
  std::string reason;    ///< why it is disabled or failed; empty when loaded
  std::vector<std::string> provides;
  std::vector<std::string> requires_plugins;
  std::vector<sdk::RequestFeature> request_features;  ///< PluginInfo::request_features (read when disabled too)
  std::filesystem::path file;  ///< the library file (empty when no file was found)
  /// The private copy the library was loaded from (empty when the file was refused before).
  std::filesystem::path loaded_from;
};

/// One mapped plugin library (defined in plugin_manager.cpp).
class LoadedLibrary;
/// A created plugin object and the library its code lives in (defined in plugin_manager.cpp).
struct PluginInstance;

/// An immutable snapshot of the loaded plugins and what they registered.
/// Thread-safety: read-only after construction; safe to share between threads and jobs.
class PluginSet : public std::enable_shared_from_this<PluginSet> {
 public:
  /// Built by PluginManager only.
  PluginSet(std::vector<PluginRecord> records, std::vector<std::unique_ptr<PluginInstance>> plugins,
            std::unique_ptr<sdk::Registries> registries);
  /// A snapshot of registries filled by the caller, with no plugin libraries behind it (tests,
  /// embedding); `records` feed describe() and feature_config_key().
  PluginSet(std::vector<PluginRecord> records, std::unique_ptr<sdk::Registries> registries);
  /// Drops registered objects, shuts plugins down, then releases their libraries (in that order).
  ~PluginSet();
  PluginSet(const PluginSet&) = delete;
  PluginSet& operator=(const PluginSet&) = delete;

  /// Stages, schedulers, preprocessors, hooks of the loaded plugins.
  const sdk::Registries& registries() const { return *registries_; }
  /// The features a request can ask for: the SDK's request schema's, then those the plugin
  /// files declare (PluginInfo::request_features, loaded or not), each name once.
  std::vector<sdk::RequestFeature> request_features() const;
  /// True when a loaded plugin is named `feature`, provides it, or owns a stage whose
  /// `feature()` is `feature`.
  bool feature_enabled(const std::string& feature) const;
  /// The config key that switches `feature` on: `plugins.enabled.<name>` of the (disabled or
  /// failed) plugin that provides it when one is known, else `plugins.enabled.<feature>`.
  std::string feature_config_key(const std::string& feature) const;
  /// Why `feature` is not available, for error messages: the plugin that provides it is
  /// disabled (and the key that enables it), failed to load (and its reason, e.g. the plugin it
  /// requires that is off), or no plugin provides it.
  std::string unavailable_reason(const std::string& feature) const;
  /// Per plugin: {name, version, description, state, reason, provides, requires, file, stages}
  /// (stages: what a loaded plugin registered).
  nlohmann::json describe() const;
  /// The records behind describe().
  const std::vector<PluginRecord>& records() const { return records_; }
  /// A pointer that keeps the library of the plugin owning `stage_name` loaded; null when the
  /// stage is unknown.
  std::shared_ptr<const void> stage_anchor(const std::string& stage_name) const;
  /// A pointer that keeps this whole snapshot (every library in it) alive; null when the
  /// snapshot is not owned by a shared_ptr. run_plan sets it as the code anchor of each stage,
  /// because a stage may run code of other plugins (model patches, hooks, schedulers) that
  /// create cached models.
  std::shared_ptr<const void> anchor() const;
  /// Runs the preloader registered for `kind` (the `load_model` message) with this snapshot as
  /// the code anchor, so the cached model keeps its plugin's code mapped. Throws
  /// Error(FeatureDisabled, "data.kind") when no loaded plugin preloads that kind.
  void preload_model(const std::string& kind, sdk::ModelAccess& models, const std::string& name) const;

 private:
  std::vector<PluginRecord> records_;
  std::vector<std::unique_ptr<PluginInstance>> plugins_;
  std::unique_ptr<sdk::Registries> registries_;
};

/// Scans, loads, reloads plugins. Thread-safety: all methods may be called from any thread;
/// `load`/`reconfigure` are serialized, `current` never blocks on a load.
class PluginManager {
 public:
  explicit PluginManager(PluginSettings settings);
  ~PluginManager();

  /// Scans `settings.dir` (*.so; .dll on Windows) and loads the enabled plugins into a new current snapshot.
  /// Never throws for a bad plugin (it is reported as failed); logs each outcome.
  void load();
  /// Replaces the settings (reload_config / SIGHUP) and builds a new snapshot. Libraries that
  /// stay enabled are reused; the old snapshot lives on while jobs hold it.
  void reconfigure(PluginSettings settings);
  /// The current snapshot (an empty one before load()).
  std::shared_ptr<const PluginSet> current() const;
  /// `current()->describe()`.
  nlohmann::json describe() const;
  /// The settings in force.
  PluginSettings settings() const;

 private:
  std::shared_ptr<const PluginSet> build_snapshot(const PluginSettings& settings);
  std::shared_ptr<LoadedLibrary> open_library(const std::filesystem::path& file,
                                              std::filesystem::path& loaded_from);
  PluginRecord probe(const std::filesystem::path& file, const PluginSettings& settings,
                     std::unique_ptr<PluginInstance>& instance);

  mutable std::mutex mutex_;         // guards settings_, current_
  std::mutex load_mutex_;            // serializes load/reconfigure
  PluginSettings settings_;
  std::shared_ptr<const PluginSet> current_;
  PluginRunDir run_dir_;             // private copies; used under load_mutex_
  // Keyed by private copy (content-addressed): the same content is mapped once.
  std::map<std::filesystem::path, std::weak_ptr<LoadedLibrary>> libraries_;  // under load_mutex_
};

}  // namespace sdxlhost::host
