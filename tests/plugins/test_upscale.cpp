// Test-only plugin "test_upscale" (feature "upscaler"): when data.output.upscale is set, its
// stage doubles every image in the "images" slot (nearest neighbour).
#include <memory>
#include <string>
#include <vector>

#include "sdxlhost/sdk/context.hpp"
#include "sdxlhost/sdk/image.hpp"
#include "sdxlhost/sdk/plugin.hpp"
#include "sdxlhost/sdk/registries.hpp"
#include "sdxlhost/sdk/request.hpp"
#include "sdxlhost/sdk/stage.hpp"

namespace sdxlhost::test_plugins {
namespace {

sdk::Image double_size(const sdk::Image& in) {
  sdk::Image out;
  out.width = in.width * 2;
  out.height = in.height * 2;
  out.channels = in.channels;
  out.metadata = in.metadata;
  out.metadata["upscaled_by"] = 2;
  out.pixels.resize(static_cast<std::size_t>(out.width) * out.height * out.channels);
  for (int y = 0; y < out.height; ++y)
    for (int x = 0; x < out.width; ++x)
      for (int c = 0; c < in.channels; ++c)
        out.pixels[(static_cast<std::size_t>(y) * out.width + x) * in.channels + c] =
            in.pixels[(static_cast<std::size_t>(y / 2) * in.width + x / 2) * in.channels + c];
  return out;
}

class UpscaleStage : public sdk::Stage {
 public:
  std::string name() const override { return "test_upscale"; }
  std::vector<std::string> reads() const override { return {sdk::slots::kImages}; }
  std::vector<std::string> writes() const override { return {sdk::slots::kImages}; }
  int order() const override { return 600; }
  std::string feature() const override { return "upscaler"; }
  bool applies(const sdk::GenerationRequest& request) const override {
    const auto& upscale = request.output.upscale;
    return !upscale.is_null() && !(upscale.is_boolean() && !upscale.get<bool>());
  }
  void run(sdk::Context& context) const override {
    auto& images = context.get<std::vector<sdk::Image>>(sdk::slots::kImages);
    for (std::size_t i = 0; i < images.size(); ++i) {
      context.throw_if_cancelled();
      images[i] = double_size(images[i]);
      context.report_progress(name(), static_cast<int>(i + 1), static_cast<int>(images.size()));
    }
  }
};

class TestUpscalePlugin : public sdk::Plugin {
 public:
  sdk::PluginInfo info() const override {
    return {"test_upscale", "1.0.0", "test-only 2x nearest-neighbour upscaler",
            {"upscaler", "test_upscale"}, {}};
  }
  void initialize(const nlohmann::json&, sdk::Registries& registries) override {
    registries.add_stage(std::make_shared<UpscaleStage>());
  }
};

}  // namespace
}  // namespace sdxlhost::test_plugins

SDXLHOST_PLUGIN(sdxlhost::test_plugins::TestUpscalePlugin)
