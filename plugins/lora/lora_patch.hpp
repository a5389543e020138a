#pragma once
/// @file lora_patch.hpp
/// The `lora` model patch: the request's LoRAs (`data.lora.models`, prompt tags already folded
/// in by the host) applied to the UNet and both text encoders with their weights, summed as
/// diffusers' `set_adapters` does (W + sum_i w_i x scale_i x delta_i). The owner of the weights
/// (plugins/sdxl) caches the patched set under cache_key() and restores the originals after.
/// Thread-safety: stateless; called concurrently by jobs.

#include <string>

#include "sdxlhost/sdk/hooks.hpp"

namespace sdxlhost::lora {

/// LoRA as an sdk::ModelPatch.
class LoraPatch final : public sdk::ModelPatch {
 public:
  /// "lora".
  std::string name() const override { return "lora"; }
  /// True when the request enables LoRA with at least one model of non-zero weight.
  bool applies(const sdk::GenerationRequest& request) const override;
  /// "NAME#HASH12@WEIGHT,..." of the LoRAs with non-zero weight, in request order.
  std::string cache_key(sdk::Context& context) const override;
  /// Adds every LoRA's modules of target.component(); all or nothing (the owner restores on a
  /// throw). Errors name data.lora.models[i].name.
  void apply(sdk::Context& context, sdk::WeightTarget& target) const override;
};

}  // namespace sdxlhost::lora
