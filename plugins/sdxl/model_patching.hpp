#pragma once
/// @file model_patching.hpp
/// Applying the request's sdk::ModelPatch objects (LoRA) to the shared pipeline for one stage.
/// A cached pipeline is used by concurrent jobs, so a stage holds it under the pipeline's lock:
/// shared when the request has no applicable patch (unpatched jobs run together), exclusive while
/// patched weights are in place; the weights are restored before the lock is released.
/// Thread-safety: one PatchScope per stage run, on the job's thread.

#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "sdxl_models.hpp"
#include "sdxlhost/sdk/hooks.hpp"

namespace sdxlhost::sdxl {

/// A CLIP text encoder's weights as a patch target ("text_encoder" / "text_encoder_2").
class ClipWeights final : public sdk::WeightTarget {
 public:
  /// @param component "text_encoder" or "text_encoder_2"
  ClipWeights(std::string component, nn::ClipTextModel& model);
  /// The component name given at construction.
  std::string component() const override { return component_; }
  /// True for every transformers key of the model.
  bool has(const std::string& key) const override { return slots_.count(key) != 0; }
  /// The current weight; throws sdk::Error(NotFound) for an unknown key.
  at::Tensor weight(const std::string& key) const override;
  /// weight = weight + delta (a new tensor); the first change keeps the original.
  void add_delta(const std::string& key, const at::Tensor& delta) override;
  /// Puts back every weight add_delta changed.
  void restore();

 private:
  std::string component_;
  std::map<std::string, at::Tensor*> slots_;
  std::map<std::string, at::Tensor> originals_;
};

/// Which parts of the pipeline a stage uses.
enum class PatchedParts { TextEncoders, Unet };

/// Holds the pipeline for one stage with the request's patches applied to `parts`.
class PatchScope {
 public:
  /// Locks `models` and applies the request's applicable patches to `parts`.
  PatchScope(sdk::Context& context, SdxlModels& models, PatchedParts parts);
  /// Restores the weights, then releases the lock.
  ~PatchScope();
  PatchScope(const PatchScope&) = delete;
  PatchScope& operator=(const PatchScope&) = delete;
  /// Number of patches applied (0 = shared use).
  std::size_t applied() const { return applied_; }

 private:
  void restore() noexcept;

  SdxlModels& models_;
  std::shared_lock<std::shared_mutex> shared_;
  std::unique_lock<std::shared_mutex> exclusive_;
  std::vector<std::unique_ptr<ClipWeights>> clip_targets_;
  bool unet_patched_ = false;
  std::size_t applied_ = 0;
};

}  // namespace sdxlhost::sdxl
