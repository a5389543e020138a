// Test-only plugin "test_bad_abi": exports the entry points but claims another ABI version, so
// the host must refuse it before creating anything.
#include <memory>

#include "sdxlhost/sdk/plugin.hpp"
#include "sdxlhost/sdk/registries.hpp"

namespace sdxlhost::test_plugins {

class BadAbiPlugin : public sdk::Plugin {
 public:
  sdk::PluginInfo info() const override { return {"test_bad_abi", "1.0.0", "wrong ABI", {}, {}}; }
  void initialize(const nlohmann::json&, sdk::Registries&) override {}
};

namespace bad_abi_entry {
int abi_version() { return sdk::kAbiVersion + 1000; }
const char* build_id() { return sdk::kBuildId; }
std::shared_ptr<sdk::Plugin> create_plugin() { return std::make_shared<BadAbiPlugin>(); }
}  // namespace bad_abi_entry

}  // namespace sdxlhost::test_plugins

BOOST_DLL_ALIAS(sdxlhost::test_plugins::bad_abi_entry::abi_version, sdxlhost_abi_version)
BOOST_DLL_ALIAS(sdxlhost::test_plugins::bad_abi_entry::build_id, sdxlhost_build_id)
BOOST_DLL_ALIAS(sdxlhost::test_plugins::bad_abi_entry::create_plugin, sdxlhost_create_plugin)
