#pragma once
/// @file plugin_loader.hpp
/// Loads one plugin file for a test exactly as the host loads plugins: through
/// host::PluginManager (private checked copy, ABI version and build id, create_plugin, info,
/// initialize), so tests of a plugin's registrations exercise the real boundary without a
/// running host. Link sdxlhost_host.

#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

#include "common/temp_dir.hpp"
#include "host/plugins/plugin_manager.hpp"
#include "sdxlhost/sdk/plugin.hpp"
#include "sdxlhost/sdk/registries.hpp"

namespace sdxlhost::test_support {

/// build/plugins/<name>.so (the plugins this build made).
inline std::filesystem::path built_plugin(const std::string& name) {
  return std::filesystem::path(SDXLHOST_PLUGIN_DIR) / (name + ".so");
}

/// One plugin, loaded alone into its own plugin snapshot.
class LoadedPlugin {
 public:
  /// Loads `file` with `config` as its plugins.config section. Throws std::runtime_error with the
  /// host's reason when the plugin is refused or fails to initialize.
  explicit LoadedPlugin(const std::filesystem::path& file, const nlohmann::json& config = nlohmann::json::object())
      : manager_(settings_for(file, config)) {
    manager_.load();
    set_ = manager_.current();
    if (set_->records().size() != 1 || set_->records()[0].state != "loaded")
      throw std::runtime_error("plugin " + file.string() + " did not load: " + set_->describe().dump());
  }

  /// What the plugin registered.
  const sdk::Registries& registries() const { return set_->registries(); }
  /// The plugin's info() as the host recorded it.
  sdk::PluginInfo info() const {
    const host::PluginRecord& r = set_->records()[0];
    sdk::PluginInfo info{r.name, r.version, r.description, r.provides, r.requires_plugins};
    info.request_features = r.request_features;
    return info;
  }

 private:
  host::PluginSettings settings_for(const std::filesystem::path& file, const nlohmann::json& config) {
    std::filesystem::create_directories(dir_ / "plugins");
    std::filesystem::copy_file(file, dir_ / "plugins" / file.filename());
    host::PluginSettings settings;
    settings.dir = dir_ / "plugins";
    settings.run_dir = dir_ / "run";
    settings.plugin_configs = nlohmann::json{{file.stem().string(), config}};
    return settings;
  }

  TempDir dir_;  // declared first: outlives the manager that maps the copy inside it
  host::PluginManager manager_;
  std::shared_ptr<const host::PluginSet> set_;
};

}  // namespace sdxlhost::test_support
