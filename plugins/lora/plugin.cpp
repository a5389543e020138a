// The lora plugin: registers the lora model patch, the lora_info stage and the LoRA preloader.
#include "sdxlhost/sdk/plugin.hpp"

#include "lora_files.hpp"
#include "lora_info_stage.hpp"
#include "lora_patch.hpp"
#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/registries.hpp"

namespace sdxlhost::lora {

/// LoRA / LoHa / LoKr files on the UNet and both text encoders.
class LoraPlugin final : public sdk::Plugin {
 public:
  sdk::PluginInfo info() const override {
    return {"lora", "0.1.0",
            "LoRA, LoCon, LoHa and LoKr files (kohya, diffusers, PEFT) on the UNet and both text encoders, "
            "several at once, reverted exactly",
            {"lora", "lora_info"},
            {"sdxl"}};
  }

  void initialize(const nlohmann::json& config, sdk::Registries& registries) override {
    if (!config.is_null() && !config.is_object())
      throw sdk::Error(sdk::ErrorCode::ValidationError, "plugins.config.lora must be an object", "plugins.config.lora");
    registries.add_model_patch(std::make_shared<LoraPatch>());
    registries.add_stage(make_lora_info_stage());
    registries.add_model_preloader(sdk::kLoras, [](sdk::ModelAccess& models, const std::string& name) {
      load_lora(models, name, "data.name");
    });
  }
};

}  // namespace sdxlhost::lora

SDXLHOST_PLUGIN(sdxlhost::lora::LoraPlugin)
