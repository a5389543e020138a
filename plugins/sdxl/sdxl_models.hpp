#pragma once
/// @file sdxl_models.hpp
/// What the SDXL stages share: the loaded pipeline models (cached by the host per checkpoint),
/// the plugin settings (device, dtype), the per-job conditioning and noise generators kept in
/// the Context's slots, and the model lookup through sdk::ModelAccess.
/// Thread-safety: SdxlModels is immutable after loading and shared by concurrent jobs.

#include <ATen/core/Tensor.h>

#include <filesystem>
#include <list>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sdxlhost/nn/clip_text_model.hpp"
#include "sdxlhost/nn/clip_tokenizer.hpp"
#include "sdxlhost/nn/noise.hpp"
#include "sdxlhost/nn/unet.hpp"
#include "sdxlhost/nn/vae.hpp"
#include "sdxlhost/sdk/context.hpp"

namespace sdxlhost::sdxl {

/// `plugins.config.sdxl`: where models run.
struct SdxlSettings {
  std::string device = "cpu";      ///< "cpu" or "cuda:N"
  std::string dtype = "fp32";      ///< fp32 | bf16 | fp16
  std::string tokenizer_dir;       ///< tokenizer/ + tokenizer_2/ for single-file checkpoints
  int vae_tile_size = 0;           ///< > 0: VAE encode/decode images larger than this tiled (px)
  int vae_tile_overlap = 64;       ///< overlap between VAE tiles (px)
  int patched_sets = 2;            ///< patched weight sets (LoRA combinations) kept per pipeline
  /// The VAE tiling for an image of `height` x `width`, or nullopt to run untiled.
  std::optional<nn::VaeTiling> tiling_for(std::int64_t height, std::int64_t width) const;
  /// The dtype named by `dtype`.
  at::ScalarType scalar_type() const;
  /// The device named by `device`.
  at::Device torch_device() const;
  /// Reads the plugin config; throws sdk::Error(ValidationError, "plugins.config.sdxl.<key>").
  static SdxlSettings from_json(const nlohmann::json& config);
};

/// One cached set of patched weights (what a LoRA combination made of some components).
struct PatchedSet {
  struct Weight {
    std::size_t target;  ///< index into the stage's target list (model_patching.cpp)
    std::string key;     ///< weight key
    at::Tensor value;    ///< the patched tensor
  };
  std::string key;  ///< the patches' cache keys and the parts patched
  std::vector<Weight> weights;
  /// Bytes the patched tensors hold.
  std::uint64_t bytes() const;
};

/// A loaded SDXL pipeline: tokenizers, text encoders, UNet, VAE and the scheduler config.
struct SdxlModels {
  std::shared_ptr<nn::ClipTokenizer> tokenizer;    ///< CLIP-L's (absent in a refiner)
  std::shared_ptr<nn::ClipTokenizer> tokenizer_2;  ///< bigG's (pads with "!")
  std::shared_ptr<nn::ClipTextModel> text_encoder;    ///< may be null (refiner)
  std::shared_ptr<nn::ClipTextModel> text_encoder_2;
  std::shared_ptr<nn::UNet2DConditionModel> unet;  ///< the denoiser
  std::shared_ptr<nn::AutoencoderKL> vae;          ///< the checkpoint's VAE
  nlohmann::json scheduler_config;       ///< scheduler/scheduler_config.json or SDXL's default
  bool force_zeros_for_empty_prompt = true;  ///< model_index.json (SDXL: true)
  std::uint64_t bytes = 0;               ///< parameter bytes, for the cache budget
  std::list<PatchedSet> patched_sets;    ///< front = most recently used (model_patching.hpp)
  /// Shared by stages using the weights as loaded, exclusive while a job's patches are applied
  /// (model_patching.hpp).
  mutable std::shared_mutex patch_mutex;

  /// The cached patched set of `key`, marked most recently used; nullptr on a miss. Call with
  /// patch_mutex held exclusively.
  const PatchedSet* find_patched_set(const std::string& key);
  /// Keeps `set`, dropping the least recently used sets beyond `limit`. Call with patch_mutex
  /// held exclusively.
  void store_patched_set(PatchedSet set, std::size_t limit);
  /// Bytes held by cached patched sets.
  std::uint64_t patched_set_bytes() const;

  /// Loads a diffusers pipeline folder or a single-file checkpoint. Single files carry no
  /// tokenizer: they come from `settings.tokenizer_dir`, else `<file's folder>/tokenizers/`.
  /// Throws sdk::Error(ModelLoadError) naming what is missing.
  static std::shared_ptr<SdxlModels> load(const std::filesystem::path& path, const SdxlSettings& settings);
};

/// The cache variant of a pipeline loaded with `settings` ("sdxl-pipeline:cpu:fp32").
std::string pipeline_variant(const SdxlSettings& settings);
/// The pipeline `name` (models_root/checkpoints) from the host's model cache, loaded on first use.
/// Load failures are sdk::Error(ModelLoadError) naming `field` (the request field that named it).
std::shared_ptr<SdxlModels> load_pipeline(sdk::ModelAccess& models, const std::string& name,
                                          const SdxlSettings& settings, const std::string& field);
/// The job's base pipeline, from the host's model cache (loaded on first use).
std::shared_ptr<SdxlModels> base_models(sdk::Context& context, const SdxlSettings& settings);
/// The VAE that decodes and encodes for this job: `models.vae` (models_root/vae/NAME) when the
/// request names one, else the checkpoint's.
std::shared_ptr<nn::AutoencoderKL> job_vae(sdk::Context& context, const SdxlSettings& settings);

/// The prompt embeddings one job uses (slot "conditioning"), for one image (batch 1).
struct SdxlConditioning {
  at::Tensor prompt_embeds;           ///< (1, 77k, 2048) te1 | te2 penultimate hidden states
  at::Tensor pooled_prompt_embeds;    ///< (1, 1280) te2 text_embeds
  at::Tensor negative_prompt_embeds;  ///< same shapes; zeros for an empty negative prompt
  at::Tensor negative_pooled_prompt_embeds;
};

/// Slot holding the per-image noise generators (seed + i), shared by prepare_latents and denoise.
inline constexpr const char* kGeneratorsSlot = "sdxl.generators";
/// Slot holding the index of the first timestep to run (img2img starts later; an int).
inline constexpr const char* kBeginIndexSlot = "sdxl.begin_index";
/// The generators of the images of one job.
using Generators = std::vector<std::shared_ptr<nn::CpuNoiseGenerator>>;

/// Noise for a batch: image i's rows come from generator i, as diffusers draws with a list of
/// generators, so every image is reproducible alone from its seed.
class BatchNoise : public sdk::NoiseSource {
 public:
  /// @param generators one per image, in batch order (kept by reference)
  /// @param device     where the noise is used: drawn on the CPU generators (so images are the
  ///                   same on every device, as diffusers' CPU generator), then moved there
  explicit BatchNoise(Generators& generators, at::Device device = at::kCPU)
      : generators_(generators), device_(device) {}
  /// Row i of `shape` (shape[0] = images) from generator i, on the device.
  at::Tensor randn(at::IntArrayRef shape) override;

 private:
  Generators& generators_;
  at::Device device_;
};

}  // namespace sdxlhost::sdxl
