// The controlnet plugin: the controlnet_prepare stage, the ControlNet denoise hook, the built-in
// canny preprocessor and the ControlNet preloader (load_model with kind "controlnet").
#include "sdxlhost/sdk/plugin.hpp"

#include "canny_preprocessor.hpp"
#include "controlnet_hook.hpp"
#include "controlnet_loader.hpp"
#include "controlnet_settings.hpp"
#include "prepare_stage.hpp"
#include "sdxlhost/sdk/models.hpp"
#include "sdxlhost/sdk/registries.hpp"

namespace sdxlhost::controlnet {

/// SDXL ControlNet, one or several units, with control-image preprocessors.
class ControlNetPlugin final : public sdk::Plugin {
 public:
  sdk::PluginInfo info() const override {
    return {"controlnet", "0.1.0",
            "SDXL ControlNet (one or several units, MultiControlNet) as a denoise hook, "
            "and control-image preprocessors (canny)",
            {"controlnet_prepare", "controlnet (denoise hook)", "canny (preprocessor)"},
            {"sdxl"}};
  }

  void initialize(const nlohmann::json& config, sdk::Registries& registries) override {
    auto settings = std::make_shared<const ControlNetSettings>(ControlNetSettings::from_json(config));
    registries.add_stage(std::make_shared<PrepareStage>(settings));
    registries.add_denoise_hook(std::make_shared<ControlNetHook>(settings));
    registries.add_preprocessor(std::make_shared<CannyPreprocessor>());
    registries.add_model_preloader(sdk::kControlnet, [settings](sdk::ModelAccess& models, const std::string& name) {
      load_controlnet(models, name, *settings, "data.name");
    });
  }
};

}  // namespace sdxlhost::controlnet

SDXLHOST_PLUGIN(sdxlhost::controlnet::ControlNetPlugin)
