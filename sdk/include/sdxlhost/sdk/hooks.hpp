#pragma once
/// @file hooks.hpp
/// The two extension points of denoising, so features such as LoRA and ControlNet are plugins
/// rather than special cases in the SDXL plugin:
/// - ModelPatch changes weights (UNet, text encoders) for a job; the owner of the weights gives
///   it a target that leaves the shared model untouched (pipeline::PatchScope: an overlay whose
///   changes become the job's patched copy, cached under the patch's cache_key).
/// - DenoiseHook is called before every UNet evaluation and may add residuals to the UNet's
///   down blocks and mid block (ControlNet).
/// Thread-safety: hook and patch objects are shared by all jobs; per-job state goes in the
/// Context's slots.

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

namespace sdxlhost::sdk {

class Context;
struct GenerationRequest;

/// Weights of one model component a ModelPatch may change. Keys are in the diffusers layout
/// ("down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight").
class WeightTarget {
 public:
  virtual ~WeightTarget() = default;
  /// "unet", "text_encoder" or "text_encoder_2".
  virtual std::string component() const = 0;
  /// True when the component has this weight.
  virtual bool has(const std::string& key) const = 0;
  /// Every weight key of the component, sorted (to match a patch's module names).
  virtual std::vector<std::string> keys() const = 0;
  /// The weight (read-only view; do not modify in place).
  virtual at::Tensor weight(const std::string& key) const = 0;
  /// Adds `delta` (same shape) to the weight as this target sees it (an overlay records it for
  /// the job's copy; an in-place table keeps the original for revert).
  virtual void add_delta(const std::string& key, const at::Tensor& delta) = 0;
};

/// Changes model weights for a job (LoRA).
class ModelPatch {
 public:
  virtual ~ModelPatch() = default;
  /// Name shown in logs and `capabilities` ("lora").
  virtual std::string name() const = 0;
  /// Whether this patch applies to `request` (e.g. lora.enabled with models).
  virtual bool applies(const GenerationRequest& request) const = 0;
  /// A key that identifies the weights this patch makes for the job ("a#3f2c…@0.8,b#91d0…@1"):
  /// two jobs with equal keys get equal weights, so the owner of the weights may cache the
  /// patched set under it and skip apply() next time. Include what identifies the files (a
  /// content hash), not only their names. May load through context.models(); throws sdk::Error
  /// naming the request field at fault (e.g. a missing file).
  virtual std::string cache_key(Context& context) const = 0;
  /// Applies the patch to one component. Called once per component the owner exposes, all
  /// before the weights are used. The target is the job's own (the shared model is never
  /// written), so a patch may fail half-way without leaving a trace, and apply() may run for two
  /// jobs at once (different keys, two executors): keep per-job state in the Context.
  virtual void apply(Context& context, WeightTarget& target) const = 0;
};

/// What the UNet gets at one evaluation (batch already doubled for classifier-free guidance).
struct DenoiseStepInput {
  at::Tensor sample;                 ///< scaled model input (N,4,h,w)
  at::Tensor timestep;               ///< scalar or (N,)
  at::Tensor encoder_hidden_states;  ///< (N,77*k,2048)
  at::Tensor text_embeds;            ///< pooled (N,1280)
  at::Tensor time_ids;               ///< (N,6) or (N,5) for the refiner
  int step = 0;                      ///< 0-based loop index
  int total_steps = 0;
};

/// Residuals added to the UNet: one per down-block output (12 for SDXL) and the mid block.
struct UNetResiduals {
  std::vector<at::Tensor> down;  ///< empty = none; otherwise one per skip connection
  at::Tensor mid;                ///< undefined = none
};

/// Called around the denoising loop (ControlNet).
class DenoiseHook {
 public:
  virtual ~DenoiseHook() = default;
  /// Name shown in logs and `capabilities` ("controlnet").
  virtual std::string name() const = 0;
  /// Whether this hook takes part in `request`.
  virtual bool applies(const GenerationRequest& request) const = 0;
  /// Once before the loop (load models, preprocess control images into Context slots).
  virtual void begin(Context& /*context*/) const {}
  /// Before each UNet evaluation: add to `residuals` (sum with what other hooks added).
  virtual void before_unet(Context& context, const DenoiseStepInput& input,
                           UNetResiduals& residuals) const = 0;
  /// Once after the loop, also when it was cancelled (free per-job state).
  virtual void end(Context& /*context*/) const {}
};

}  // namespace sdxlhost::sdk
