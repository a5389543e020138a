#pragma once
/// @file prepare_stage.hpp
/// The `controlnet_prepare` stage (order 250, feature "controlnet"): for every unit of
/// `data.controlnet` decodes the control image, runs its preprocessor (any registered one),
/// loads the ControlNet through the host's model cache, and leaves a PreparedControl in the
/// Context for the denoise hook. Its applies() validates `data.controlnet` (so a bad request is
/// refused when it is submitted, before it queues).
/// Thread-safety: stateless; shared by all jobs.

#include <memory>

#include "controlnet_settings.hpp"
#include "sdxlhost/sdk/stage.hpp"

namespace sdxlhost::controlnet {

/// Prepares the units of a ControlNet request.
class PrepareStage final : public sdk::Stage {
 public:
  explicit PrepareStage(std::shared_ptr<const ControlNetSettings> settings) : settings_(std::move(settings)) {}
  /// "controlnet_prepare".
  std::string name() const override { return "controlnet_prepare"; }
  /// Nothing: it needs only the request.
  std::vector<std::string> reads() const override { return {}; }
  /// The PreparedControl slot.
  std::vector<std::string> writes() const override;
  /// 250: after the latents are prepared, before denoise (300).
  int order() const override { return 250; }
  /// "controlnet".
  std::string feature() const override { return "controlnet"; }
  /// True when `data.controlnet` is set; throws sdk::Error(ValidationError) when it is invalid.
  bool applies(const sdk::GenerationRequest& request) const override;
  /// Decodes, preprocesses and loads; errors name the unit's field.
  void run(sdk::Context& context) const override;

 private:
  std::shared_ptr<const ControlNetSettings> settings_;
};

}  // namespace sdxlhost::controlnet
