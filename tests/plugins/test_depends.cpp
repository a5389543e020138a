// Test-only plugin "test_depends": requires the plugin test_generate (so the host must
// initialize it after that one, and fail it when test_generate is off) and adds the preprocessor
// "test_invert" (255 - value on every channel).
#include <memory>
#include <string>

#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/image.hpp"
#include "sdxlhost/sdk/plugin.hpp"
#include "sdxlhost/sdk/preprocessor.hpp"
#include "sdxlhost/sdk/registries.hpp"

namespace sdxlhost::test_plugins {
namespace {

class InvertPreprocessor : public sdk::Preprocessor {
 public:
  std::string name() const override { return "test_invert"; }
  sdk::Image run(const sdk::Image& input, const nlohmann::json&) const override {
    sdk::Image out = input;
    for (auto& value : out.pixels) value = static_cast<std::uint8_t>(255 - value);
    return out;
  }
};

class DependsPlugin : public sdk::Plugin {
 public:
  sdk::PluginInfo info() const override {
    return {"test_depends", "1.0.0", "test-only: requires test_generate, adds preprocessor test_invert",
            {"test_invert"}, {"test_generate"}};
  }
  void initialize(const nlohmann::json&, sdk::Registries& registries) override {
    registries.add_preprocessor(std::make_shared<InvertPreprocessor>());
  }
};

}  // namespace
}  // namespace sdxlhost::test_plugins

SDXLHOST_PLUGIN(sdxlhost::test_plugins::DependsPlugin)
