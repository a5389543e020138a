#pragma once
// Loads build/plugins/schedulers.so through the plugin boundary (Boost.DLL, ABI check,
// create_plugin, initialize into a Registries), as the host does. Declaration order matters:
// the registries (whose factories live in the library) go before the plugin, the plugin
// before the library.
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>

#include <boost/dll/shared_library.hpp>

#include "sdxlhost/sdk/abi.hpp"
#include "sdxlhost/sdk/plugin.hpp"
#include "sdxlhost/sdk/registries.hpp"

namespace sdxlhost::test {

class LoadedSchedulers {
 public:
  explicit LoadedSchedulers(const std::filesystem::path& file = std::filesystem::path(SDXLHOST_PLUGIN_DIR) /
                                                                 "schedulers.so")
      : library_(file, boost::dll::load_mode::rtld_lazy | boost::dll::load_mode::rtld_local) {
    auto& abi = library_.get_alias<sdk::AbiVersionFn>("sdxlhost_abi_version");
    if (abi() != sdk::kAbiVersion) throw std::runtime_error("ABI version mismatch in " + file.string());
    auto& create = library_.get_alias<sdk::CreatePluginFn>("sdxlhost_create_plugin");
    plugin_ = create();
    registries_ = std::make_unique<sdk::Registries>();
    registries_->set_current_plugin(plugin_->info().name);
    plugin_->initialize(nlohmann::json::object(), *registries_);
  }
  ~LoadedSchedulers() {
    registries_.reset();
    if (plugin_) plugin_->shutdown();
    plugin_.reset();
  }
  LoadedSchedulers(const LoadedSchedulers&) = delete;
  LoadedSchedulers& operator=(const LoadedSchedulers&) = delete;

  sdk::Registries& registries() { return *registries_; }
  const sdk::Plugin& plugin() const { return *plugin_; }

 private:
  boost::dll::shared_library library_;
  std::shared_ptr<sdk::Plugin> plugin_;
  std::unique_ptr<sdk::Registries> registries_;
};

}  // namespace sdxlhost::test
