#pragma once
/// @file model_patching.hpp
/// Applying the request's sdk::ModelPatch objects (LoRA) to the shared pipeline for one stage.
/// A cached pipeline is used by concurrent jobs, so a stage holds it under the pipeline's lock:
/// shared when the request has no applicable patch (unpatched jobs run together), exclusive while
/// patched weights are in place; the original tensors are put back before the lock is released,
/// so the next job sees the checkpoint's weights bit for bit and nothing is re-read from disk.
///
/// Patched sets are cached on the pipeline by the patches' cache keys
/// (`plugins.config.sdxl.patched_sets` sets, LRU): a job whose LoRA set was used recently swaps
/// the cached tensors in (no delta is recomputed) and swaps the originals back after.
/// Each scope patches one expert: "base" (the sdxl plugin's stages) or "refiner" (the refiner
/// plugin's). It sets the `patch_expert` slot before calling the patches; a patch whose
/// cache_key() is empty for that expert has nothing to apply there and is skipped.
/// Thread-safety: one PatchScope per stage run, on the job's thread.

#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "sdxlhost/pipeline/sdxl_models.hpp"
#include "sdxlhost/nn/patchable_weights.hpp"
#include "sdxlhost/sdk/hooks.hpp"

namespace sdxlhost::pipeline {

/// Which parts of the pipeline a stage uses.
enum class PatchedParts { TextEncoders, Unet };

/// Holds the pipeline for one stage with the request's patches applied to `parts`.
class PatchScope {
 public:
  /// Locks `models` and applies the request's applicable patches for `expert` to `parts`,
  /// keeping at most `cached_sets` patched sets on the pipeline for reuse (0: none).
  PatchScope(sdk::Context& context, SdxlModels& models, PatchedParts parts, int cached_sets,
             const std::string& expert = "base");
  /// Restores the weights, then releases the lock.
  ~PatchScope();
  PatchScope(const PatchScope&) = delete;
  PatchScope& operator=(const PatchScope&) = delete;
  /// Number of patches applied (0 = shared use).
  std::size_t applied() const { return applied_; }
  /// True when the patched weights came from the pipeline's cache of patched sets.
  bool from_cache() const { return from_cache_; }

 private:
  void restore() noexcept;
  std::vector<nn::PatchableWeights*> targets();
  void apply(sdk::Context& context, const std::vector<std::shared_ptr<sdk::ModelPatch>>& patches);

  SdxlModels& models_;
  PatchedParts parts_;
  std::shared_lock<std::shared_mutex> shared_;
  std::unique_lock<std::shared_mutex> exclusive_;
  std::vector<std::unique_ptr<nn::PatchableWeights>> clip_targets_;
  bool patched_ = false;
  bool from_cache_ = false;
  std::size_t applied_ = 0;
};

}  // namespace sdxlhost::pipeline
