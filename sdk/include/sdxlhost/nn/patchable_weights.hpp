#pragma once
/// @file patchable_weights.hpp
/// The one table of patchable parameters every patchable model owns (UNet2DConditionModel,
/// ClipTextModel: base, refiner and both text encoders): weight key (diffusers / transformers
/// name) -> the model's tensor slot. Two ways to patch through it:
/// - WeightOverlay (what the pipeline uses): a job's sdk::WeightTarget over a model's table that
///   never writes the model; its changes() become a patched copy of the model
///   (`with_weights`), which shares every unchanged tensor with the original. Jobs with different
///   patches then run at the same time, and jobs without patches use the shared model as loaded.
/// - PatchableWeights::add_delta / restore in place, keeping the originals so a revert puts the
///   very same tensors back (bit for bit; the mapped file is never written). Only for a model
///   that nothing else uses meanwhile (tests, tools, bench_lora's old-lifecycle rows).
/// Both add a delta with the same arithmetic (add_weight_delta), so they give identical weights.
/// Thread-safety: a table is not synchronised: reading it (weight, keys, an overlay over it) may
/// happen concurrently; changing it in place must not overlap any other use of the model.

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
  /// Puts `value` in place of the weight without keeping the original: how a patched copy of a
  /// model (`with_weights`) takes its changed tensors. Same checks as set_weight.
  void install(const std::string& key, const at::Tensor& value);

 private:
  at::Tensor& slot(const std::string& key, sdk::ErrorCode code);
  /// The slot of `key` after checking `value` may take its place (shape, dtype, device).
  at::Tensor& checked_slot(const std::string& key, const at::Tensor& value);

  std::string component_;
  std::map<std::string, at::Tensor*> slots_;
  std::map<std::string, at::Tensor> originals_;
};

/// `weight + delta`, summed in float32 and stored in the weight's dtype and device (a new
/// tensor): a bf16 model is rounded once per delta, as diffusers' fuse_lora does. The one place
/// patch arithmetic lives (PatchableWeights and WeightOverlay both call it).
SDXLHOST_API at::Tensor add_weight_delta(const at::Tensor& weight, const at::Tensor& delta);

/// A job's patch target over a model's table: reads see the model's weights with this overlay's
/// changes on top, add_delta records the patched tensor here and never writes the model. Several
/// patches in turn add up (the second sees the first's result), exactly as in place.
/// Thread-safety: one overlay per job and component; the table it reads must not change while it
/// lives (nothing patches a shared model in place).
class SDXLHOST_API WeightOverlay final : public sdk::WeightTarget {
 public:
  /// An overlay over `base` (which must outlive it), with no change yet.
  explicit WeightOverlay(const PatchableWeights& base) : base_(base) {}

  /// The base table's component.
  std::string component() const override { return base_.component(); }
  /// True when the base has this weight.
  bool has(const std::string& key) const override { return base_.has(key); }
  /// The base's keys, sorted.
  std::vector<std::string> keys() const override { return base_.keys(); }
  /// The changed weight, else the base's. Throws sdk::Error(NotFound) for an unknown key.
  at::Tensor weight(const std::string& key) const override;
  /// Records weight(key) + delta (add_weight_delta). Throws sdk::Error(ValidationError) for an
  /// unknown key or a delta of another shape; the base is never touched.
  void add_delta(const std::string& key, const at::Tensor& delta) override;

  /// Every changed weight: key -> its patched tensor.
  const std::map<std::string, at::Tensor>& changes() const { return changes_; }
  /// Bytes the patched tensors hold (what a patched copy of the model costs on top of it).
  std::uint64_t bytes() const;

 private:
  const PatchableWeights& base_;
  std::map<std::string, at::Tensor> changes_;
};

}  // namespace sdxlhost::nn
