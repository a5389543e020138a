#pragma once
/// @file plugin.hpp
/// The plugin boundary. A plugin is a shared library exporting three Boost.DLL aliases:
///   - `sdxlhost_abi_version`  int()          -> sdk::kAbiVersion it was built with
///   - `sdxlhost_build_id`     const char*()  -> sdk::kBuildId (compiler identity)
///   - `sdxlhost_create_plugin` std::shared_ptr<Plugin>()
/// `SDXLHOST_PLUGIN(my_ns::MyPlugin)` in one .cpp file defines all three.
///
/// Lifecycle: the host checks the ABI version and build id, creates the plugin, reads info(),
/// calls initialize() once with the plugin's config section and the Registries to add to, and
/// shutdown() before unloading. Anything a plugin registered is dropped before its library is
/// unmapped. Exceptions from initialize() are caught by the host, which reports the plugin as
/// failed with the message and keeps serving.

#include <memory>
#include <string>
#include <vector>

#include <boost/dll/alias.hpp>
#include <nlohmann/json.hpp>

#include "sdxlhost/sdk/abi.hpp"
#include "sdxlhost/sdk/request_features.hpp"

namespace sdxlhost::sdk {

class Registries;

/// Describes a plugin in `capabilities` and `sdxl-host plugins`.
struct PluginInfo {
  std::string name;      ///< feature name used in `plugins.enabled.<name>` ("schedulers")
  std::string version;   ///< the plugin's own version ("1.0.0")
  std::string description;  ///< one line for `capabilities` and `sdxl-host plugins`
  std::vector<std::string> provides;  ///< what it adds: stage and scheduler names, ...
  std::vector<std::string> requires_plugins;  ///< plugins that must be enabled for it to work
  /// Request features it serves beyond the fields the SDK's request types
  /// (request_features.hpp): {"my_feature", "data.my_feature"} makes a request that sets
  /// data.my_feature need this plugin (FEATURE_DISABLED naming the field when it is off) and
  /// passes data.my_feature to plugins without an "unknown field" warning.
  std::vector<RequestFeature> request_features;
};

/// One plugin: describes itself and registers what it provides. Created by the host through the
/// exported `sdxlhost_create_plugin`; initialize() and shutdown() are called once each, from one
/// thread. Thread-safety: what it registers must follow the rules of each registered interface.
class Plugin {
 public:
  virtual ~Plugin() = default;
  /// Name, version, what it provides and requires; called before initialize().
  virtual PluginInfo info() const = 0;
  /// Registers what the plugin provides. `config` is `plugins.config.<name>` (or {}).
  /// Throw sdk::Error to refuse loading, with a message saying why.
  virtual void initialize(const nlohmann::json& config, Registries& registries) = 0;
  /// Called before the library is unloaded.
  virtual void shutdown() {}
};

/// Signatures of the exported entry points.
using AbiVersionFn = int();
using BuildIdFn = const char*();
using CreatePluginFn = std::shared_ptr<Plugin>();

}  // namespace sdxlhost::sdk

/// Defines the three entry points for `PluginClass` (default-constructible, derives from Plugin).
/// Use once, at namespace scope, in one .cpp file of the plugin.
#define SDXLHOST_PLUGIN(PluginClass)                                                         \
  namespace sdxlhost_plugin_entry {                                                          \
  int abi_version() { return ::sdxlhost::sdk::kAbiVersion; }                                 \
  const char* build_id() { return ::sdxlhost::sdk::kBuildId; }                               \
  std::shared_ptr<::sdxlhost::sdk::Plugin> create_plugin() {                                 \
    return std::make_shared<PluginClass>();                                                  \
  }                                                                                          \
  }                                                                                          \
  BOOST_DLL_ALIAS(sdxlhost_plugin_entry::abi_version, sdxlhost_abi_version)                  \
  BOOST_DLL_ALIAS(sdxlhost_plugin_entry::build_id, sdxlhost_build_id)                        \
  BOOST_DLL_ALIAS(sdxlhost_plugin_entry::create_plugin, sdxlhost_create_plugin)
