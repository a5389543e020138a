#pragma once
/// @file sdxl_models.hpp
/// A loaded SDXL pipeline (base or refiner, either checkpoint layout), cached by the host's model
/// store per checkpoint and settings, and the per-job model lookups through sdk::ModelAccess.
/// Shared by the sdxl plugin and the refiner plugin.
/// Thread-safety: SdxlModels is immutable after loading and shared by concurrent jobs; a stage
/// that uses its networks holds `patch_mutex` shared (or exclusive while it patches weights).

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
#include "sdxlhost/nn/unet.hpp"
#include "sdxlhost/nn/vae.hpp"
#include "sdxlhost/nn/checkpoint.hpp"
#include "sdxlhost/pipeline/settings.hpp"
#include "sdxlhost/sdk/context.hpp"
#include "sdxlhost/sdk/export.hpp"

namespace sdxlhost::pipeline {

/// One cached set of patched weights (what a LoRA combination made of some components).
struct SDXLHOST_API PatchedSet {
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
struct SDXLHOST_API SdxlModels {
  std::shared_ptr<nn::ClipTokenizer> tokenizer;    ///< CLIP-L's (absent in a refiner)
  std::shared_ptr<nn::ClipTokenizer> tokenizer_2;  ///< bigG's (pads with "!")
  std::shared_ptr<nn::ClipTextModel> text_encoder;    ///< may be null (refiner)
  std::shared_ptr<nn::ClipTextModel> text_encoder_2;
  std::shared_ptr<nn::UNet2DConditionModel> unet;  ///< the denoiser
  std::shared_ptr<nn::AutoencoderKL> vae;          ///< the checkpoint's VAE
  nlohmann::json scheduler_config;       ///< scheduler/scheduler_config.json or SDXL's default
  /// model_index.json; a single file: true for a base, false for a refiner (as refiner-1.0)
  bool force_zeros_for_empty_prompt = true;
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

  /// True for a refiner checkpoint (stable-diffusion-xl-refiner-1.0 style), detected from the
  /// weights: no first text encoder and a UNet whose add-embedding takes 5 time ids (original
  /// size, crop, aesthetic score) instead of the base's 6.
  bool is_refiner() const;
  /// Number of time ids the UNet's add-embedding expects (6 base, 5 refiner).
  int time_id_count() const;

  /// Loads a diffusers pipeline folder or a single-file checkpoint. Single files carry no
  /// tokenizer: they come from `settings.tokenizer_dir`, else `<file's folder>/tokenizers/`.
  /// Throws sdk::Error(ModelLoadError) naming what is missing.
  static std::shared_ptr<SdxlModels> load(const std::filesystem::path& path, const PipelineSettings& settings);
  /// Binds opened weights (nn::open_checkpoint) to the networks, without tokenizers; every key of
  /// every present component must be used (ModelLoadError naming the key otherwise). Used by
  /// load() and, on the meta device, to check full-size key lists.
  static std::shared_ptr<SdxlModels> bind(const nn::CheckpointWeights& weights, at::ScalarType dtype,
                                          at::Device device, const std::string& source);
};

/// The cache variant of a pipeline loaded with `settings` ("sdxl-pipeline:cpu:fp32").
SDXLHOST_API std::string pipeline_variant(const PipelineSettings& settings);
/// The pipeline `name` (models_root/checkpoints) from the host's model cache, loaded on first use.
/// Load failures are sdk::Error(ModelLoadError) naming `field` (the request field that named it).
SDXLHOST_API std::shared_ptr<SdxlModels> load_pipeline(sdk::ModelAccess& models, const std::string& name,
                                          const PipelineSettings& settings, const std::string& field);
/// The job's base pipeline, from the host's model cache (loaded on first use).
SDXLHOST_API std::shared_ptr<SdxlModels> base_models(sdk::Context& context, const PipelineSettings& settings);
/// The VAE that decodes and encodes for this job: `models.vae` (models_root/vae/NAME) when the
/// request names one, else the base checkpoint's (a refiner shares it: the base decodes).
SDXLHOST_API std::shared_ptr<nn::AutoencoderKL> job_vae(sdk::Context& context, const PipelineSettings& settings);

}  // namespace sdxlhost::pipeline
