#pragma once
/// @file patchable_weights.hpp
/// The one table of patchable parameters every model uses (UNet, CLIP text encoders): weight key
/// (diffusers / transformers name) -> the model's tensor slot, plus the originals of whatever a
/// ModelPatch changed, so a revert puts the very same tensors back (bit for bit, the mapped file
/// is never written). It is the sdk::WeightTarget a LoRA plugin sees.
/// Thread-safety: not synchronised; the owner of the model serialises patching with its use
/// (plugins/sdxl holds the pipeline's lock exclusively while patched weights are in place).

#include <ATen/core/Tensor.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/export.hpp"
#include "sdxlhost/sdk/hooks.hpp"

namespace sdxlhost::nn {

/// A component's parameters as a patch target.
class SDXLHOST_API PatchableWeights final : public sdk::WeightTarget {
 public:
  PatchableWeights() = default;
  /// @param component "unet", "text_encoder" or "text_encoder_2"
  /// @param slots     key -> the model's tensor (the model must outlive this table)
  PatchableWeights(std::string component, std::map<std::string, at::Tensor*> slots);
  /// Same, from a model's named_parameters() list.
  PatchableWeights(std::string component, const std::vector<std::pair<std::string, at::Tensor*>>& slots);

  /// The component name given at construction.
  std::string component() const override { return component_; }
  /// True when the component has this weight.
  bool has(const std::string& key) const override { return slots_.count(key) != 0; }
  /// Every weight key, sorted.
  std::vector<std::string> keys() const override;
  /// The current weight. Throws sdk::Error(NotFound) for an unknown key.
  at::Tensor weight(const std::string& key) const override;
  /// weight = weight + delta, computed in float32 and stored in the weight's dtype and device (a
  /// new tensor). The first change of a key keeps the original. Throws sdk::Error(ValidationError)
  /// for an unknown key or a delta of another shape.
  void add_delta(const std::string& key, const at::Tensor& delta) override;

  /// Puts `value` (same shape, dtype and device) in place of the weight, keeping the original
  /// (used to re-install a cached patched set without recomputing it).
  void set_weight(const std::string& key, const at::Tensor& value);
  /// Puts every changed weight back; returns how many were restored.
  std::size_t restore();
  /// Keys currently changed, sorted.
  std::vector<std::string> patched_keys() const;
  /// The original (unpatched) weight of a key, changed or not.
  at::Tensor original(const std::string& key) const;
  /// Bytes held by the parameters as they are now.
  std::uint64_t bytes() const;

 private:
  at::Tensor& slot(const std::string& key, sdk::ErrorCode code);

  std::string component_;
  std::map<std::string, at::Tensor*> slots_;
  std::map<std::string, at::Tensor> originals_;
};

}  // namespace sdxlhost::nn
