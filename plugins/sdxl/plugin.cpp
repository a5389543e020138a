// The sdxl plugin: registers the generation stages and the checkpoint preloader.
#include "sdxlhost/sdk/plugin.hpp"

#include "sdxlhost/pipeline/sdxl_models.hpp"
#include "sdxlhost/sdk/models.hpp"
#include "sdxlhost/sdk/registries.hpp"
#include "stages.hpp"

namespace sdxlhost::sdxl {

/// SDXL text-to-image: encode_prompt, prepare_latents, denoise, vae_decode.
class SdxlPlugin final : public sdk::Plugin {
 public:
  sdk::PluginInfo info() const override {
    return {"sdxl", "0.1.0",
            "SDXL text-to-image and image-to-image from diffusers folders or single-file checkpoints "
            "(UNet, VAE, both CLIP text encoders; a refiner checkpoint refines an init image)",
            {"encode_prompt", "prepare_latents", "denoise", "vae_decode"},
            {"schedulers"}};
  }

  void initialize(const nlohmann::json& config, sdk::Registries& registries) override {
    auto settings = std::make_shared<const pipeline::PipelineSettings>(pipeline::PipelineSettings::from_json(config, "sdxl"));
    for (auto& stage : make_stages(settings)) registries.add_stage(stage);
    registries.add_model_preloader(sdk::kCheckpoints, [settings](sdk::ModelAccess& models,
                                                                 const std::string& name) {
      pipeline::load_pipeline(models, name, *settings, "data.name");
    });
  }
};

}  // namespace sdxlhost::sdxl

SDXLHOST_PLUGIN(sdxlhost::sdxl::SdxlPlugin)
