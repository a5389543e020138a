// Test-only plugin "test_throws_init": registers a stage, then throws from initialize(); the
// host must report it as failed and keep nothing it registered.
#include <memory>
#include <string>
#include <vector>

#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/plugin.hpp"
#include "sdxlhost/sdk/registries.hpp"
#include "sdxlhost/sdk/stage.hpp"

namespace sdxlhost::test_plugins {
namespace {

class NeverRunStage : public sdk::Stage {
 public:
  std::string name() const override { return "test_throws_init_stage"; }
  std::vector<std::string> reads() const override { return {}; }
  std::vector<std::string> writes() const override { return {"never"}; }
  int order() const override { return 900; }
  std::string feature() const override { return "test_throws_init"; }
  bool applies(const sdk::GenerationRequest&) const override { return true; }
  void run(sdk::Context&) const override {}
};

class ThrowsInitPlugin : public sdk::Plugin {
 public:
  sdk::PluginInfo info() const override {
    return {"test_throws_init", "1.0.0", "fails in initialize", {"test_throws_init_stage"}, {}};
  }
  void initialize(const nlohmann::json&, sdk::Registries& registries) override {
    registries.add_stage(std::make_shared<NeverRunStage>());
    throw sdk::Error(sdk::ErrorCode::PluginError, "test_throws_init: initialization refused on purpose");
  }
};

}  // namespace
}  // namespace sdxlhost::test_plugins

SDXLHOST_PLUGIN(sdxlhost::test_plugins::ThrowsInitPlugin)
