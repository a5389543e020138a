#pragma once
/// @file controlnet_hook.hpp
/// The ControlNet denoise hook: before each UNet evaluation, every unit whose guidance window
/// keeps this step runs its ControlNet on what the UNet gets (the control image batched like the
/// latents, doubled for classifier-free guidance) and adds its residuals, scaled by its
/// conditioning_scale; several units are summed in request order (diffusers' MultiControlNet).
/// A unit not kept on a step is not run at all (diffusers runs it with scale 0: the same sum).
/// guess_mode as diffusers: with guidance the ControlNet sees only the conditional half (zeros
/// for the unconditional half), and its residuals are scaled by logspace(-1, 0) x scale, shallow
/// to deep.
/// Thread-safety: stateless; per-job state is the PreparedControl slot of the job's Context.

#include <memory>

#include "controlnet_settings.hpp"
#include "sdxlhost/sdk/hooks.hpp"

namespace sdxlhost::controlnet {

/// Adds ControlNet residuals to the UNet.
class ControlNetHook final : public sdk::DenoiseHook {
 public:
  explicit ControlNetHook(std::shared_ptr<const ControlNetSettings> settings) : settings_(std::move(settings)) {}
  /// "controlnet".
  std::string name() const override { return "controlnet"; }
  /// True when the request has at least one enabled ControlNet unit.
  bool applies(const sdk::GenerationRequest& request) const override;
  /// Adds the residuals of the units kept on this step.
  void before_unet(sdk::Context& context, const sdk::DenoiseStepInput& input,
                   sdk::UNetResiduals& residuals) const override;

 private:
  std::shared_ptr<const ControlNetSettings> settings_;
};

/// Adds `add` to `into` (assigns when `into` is empty); down lists must have the same length.
/// Throws sdk::Error(PluginError) when they do not (ControlNets of different UNets).
void accumulate_residuals(sdk::UNetResiduals& into, const sdk::UNetResiduals& add);

}  // namespace sdxlhost::controlnet
