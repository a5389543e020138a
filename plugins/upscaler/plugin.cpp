// The upscaler plugin: registers the post-process stage and the preloader of kind "upscalers".
#include <memory>

#include "sdxlhost/sdk/models.hpp"
#include "sdxlhost/sdk/plugin.hpp"
#include "sdxlhost/sdk/registries.hpp"
#include "upscale_stage.hpp"

namespace sdxlhost::upscaler {
namespace {

class UpscalerPlugin final : public sdk::Plugin {
 public:
  sdk::PluginInfo info() const override {
    return {"upscaler", "1.0.0",
            "ESRGAN-family upscalers (RRDBNet, SRVGGNetCompact; .safetensors/.pth), tiled; Lanczos",
            {"upscaler", "upscale"}, {}};
  }
  void initialize(const nlohmann::json& config, sdk::Registries& registries) override {
    const RuntimeSettings settings = RuntimeSettings::from_config(config);
    registries.add_stage(std::make_shared<UpscaleStage>(settings));
    registries.add_model_preloader(sdk::kUpscalers, [settings](sdk::ModelAccess& models, const std::string& name) {
      models.load_as<UpscalerModel>(sdk::kUpscalers, name, settings.variant(), "data.name",
                                    [&](const std::filesystem::path& file) { return read_model(file, settings); });
    });
  }
};

}  // namespace
}  // namespace sdxlhost::upscaler

SDXLHOST_PLUGIN(sdxlhost::upscaler::UpscalerPlugin)
