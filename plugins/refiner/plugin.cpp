// The refiner plugin: registers the ensemble-of-experts stages (see refiner_stages.hpp).
#include <memory>

#include "sdxlhost/pipeline/settings.hpp"
#include "sdxlhost/sdk/plugin.hpp"
#include "sdxlhost/sdk/registries.hpp"
#include "refiner_stages.hpp"

namespace sdxlhost::refiner {
namespace {

/// SDXL's second expert: data.models.refiner continues the base's denoising from the switch.
class RefinerPlugin final : public sdk::Plugin {
 public:
  sdk::PluginInfo info() const override {
    return {"refiner", "1.0.0",
            "SDXL refiner as the second expert (ensemble of experts: the base hands its latents over at "
            "denoising_end, default 0.8)",
            {"refiner_encode_prompt", "refine", "refiner_info"},
            {"sdxl"}};
  }
  void initialize(const nlohmann::json& config, sdk::Registries& registries) override {
    auto settings = std::make_shared<const pipeline::PipelineSettings>(
        pipeline::PipelineSettings::from_json(config, "refiner"));
    for (auto& stage : make_stages(settings)) registries.add_stage(stage);
  }
};

}  // namespace
}  // namespace sdxlhost::refiner

SDXLHOST_PLUGIN(sdxlhost::refiner::RefinerPlugin)
