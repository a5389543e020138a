// Test-only plugin "test_config_echo": registers nothing; when its config section has
// "record_to" (a file path), initialize() writes the whole config object it received there, so
// tests can see what the host passes to a plugin (its section plus the top-level device/dtype).
#include <fstream>
#include <string>

#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/plugin.hpp"
#include "sdxlhost/sdk/registries.hpp"

namespace sdxlhost::test_plugins {
namespace {

class TestConfigEchoPlugin : public sdk::Plugin {
 public:
  sdk::PluginInfo info() const override {
    return {"test_config_echo", "1.0.0", "test-only: writes the config it got to config.record_to", {}, {}};
  }
  /// Writes `config` (as JSON) to `config.record_to` when that is set.
  void initialize(const nlohmann::json& config, sdk::Registries&) override {
    if (!config.is_object() || !config.contains("record_to")) return;
    std::ofstream out(config.at("record_to").get<std::string>(), std::ios::binary | std::ios::trunc);
    if (!out)
      throw sdk::Error(sdk::ErrorCode::PluginError, "test_config_echo: cannot write config.record_to");
    out << config.dump();
  }
};

}  // namespace
}  // namespace sdxlhost::test_plugins

SDXLHOST_PLUGIN(sdxlhost::test_plugins::TestConfigEchoPlugin)
