#pragma once
/// @file model_patching.hpp
/// The request's sdk::ModelPatch objects (LoRA) for one stage of a shared pipeline, without
/// touching it. A loaded pipeline is used by concurrent jobs, so nothing ever writes its weights:
/// - no applicable patch: the stage computes with the pipeline as loaded (models() is it; no
///   lock, no copy), so unpatched jobs share every weight;
/// - patches: the stage computes with a patched copy (models()) that shares everything but the
///   networks the patches changed (`parts`), and those share every weight the patches left alone:
///   the patches are applied to an nn::WeightOverlay per network and the copy takes the overlay's
///   changes (UNet2DConditionModel / ClipTextModel::with_weights). The copies are cached on the
///   pipeline by the patches' cache keys (PatchedSets: `plugins.config.<pipeline>.patched_sets`
///   copies, LRU), so a job whose LoRA set was used recently computes nothing.
/// Jobs with different LoRA sets therefore run at the same time on several executors, each with
/// its own weights, and a job sees the checkpoint's weights bit for bit after any LoRA job.
///
/// Each scope patches one expert: "base" (the sdxl plugin's stages) or "refiner" (the refiner
/// plugin's). It sets the `patch_expert` slot before calling the patches; a patch whose
/// cache_key() is empty for that expert has nothing to apply there and is skipped.
/// Thread-safety: one PatchScope per stage run, on the job's thread; any number at once.

#include <memory>
#include <string>
#include <vector>

#include "sdxlhost/pipeline/sdxl_models.hpp"
#include "sdxlhost/sdk/hooks.hpp"

namespace sdxlhost::pipeline {

/// Which parts of the pipeline a stage uses.
enum class PatchedParts { TextEncoders, Unet };

/// The pipeline one stage computes with, with the request's patches for `expert` applied to
/// `parts` (see the file comment).
class SDXLHOST_API PatchScope {
 public:
  /// Finds (cache_key) and applies the request's applicable patches for `expert` to `parts` of
  /// `models`, keeping at most `cached_sets` patched copies on the pipeline for reuse (0: none).
  /// A patch that fails leaves nothing behind (the pipeline is never written). Throws the
  /// patch's sdk::Error.
  PatchScope(sdk::Context& context, std::shared_ptr<const SdxlModels> models, PatchedParts parts, int cached_sets,
             const std::string& expert = "base");
  PatchScope(const PatchScope&) = delete;
  PatchScope& operator=(const PatchScope&) = delete;

  /// What the stage computes with: the pipeline itself, or its patched copy (held by this scope).
  const SdxlModels& models() const { return *models_; }
  /// Number of patches applied (0 = the shared pipeline as loaded).
  std::size_t applied() const { return applied_; }
  /// True when the patched copy came from the pipeline's cache (or another job's build of it).
  bool from_cache() const { return from_cache_; }

 private:
  std::shared_ptr<const SdxlModels> models_;
  bool from_cache_ = false;
  std::size_t applied_ = 0;
};

/// Makes the patched copy of `models` for `patches` (each applied to every network of `parts`, in
/// order): what PatchScope caches. Public for benchmarks and tests.
SDXLHOST_API PatchedModels make_patched_models(sdk::Context& context, const SdxlModels& models, PatchedParts parts,
                                               const std::vector<std::shared_ptr<sdk::ModelPatch>>& patches);

}  // namespace sdxlhost::pipeline
