#pragma once
/// @file sdxl_models.hpp
/// A loaded SDXL pipeline (base or refiner, either checkpoint layout), cached by the host's model
/// store per checkpoint and settings, and the per-job model lookups through sdk::ModelAccess.
/// Shared by the sdxl plugin and the refiner plugin.
/// Thread-safety: SdxlModels is immutable after loading and shared by concurrent jobs; nothing
/// writes its networks' weights (a job with LoRAs computes with a patched copy, model_patching.hpp),
/// so stages use it without a lock. A copy of an SdxlModels shares its networks.

#include <ATen/core/Tensor.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sdxlhost/nn/clip_text_model.hpp"
#include "sdxlhost/nn/clip_tokenizer.hpp"
#include "sdxlhost/nn/unet.hpp"
#include "sdxlhost/nn/vae.hpp"
#include "sdxlhost/nn/checkpoint.hpp"
#include "sdxlhost/pipeline/patched_sets.hpp"
#include "sdxlhost/pipeline/settings.hpp"
#include "sdxlhost/sdk/context.hpp"
#include "sdxlhost/sdk/export.hpp"

namespace sdxlhost::pipeline {

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
  std::uint64_t bytes = 0;               ///< parameter bytes as loaded, for the cache budget
  /// The patched copies of this pipeline (LoRA sets), by the patches' cache keys
  /// (model_patching.hpp). Null in a patched copy itself.
  std::shared_ptr<PatchedSets> patched_sets = std::make_shared<PatchedSets>();

  /// `bytes` plus the changed weights of the patched copies kept: what the host's model cache
  /// counts for this pipeline (load_pipeline).
  std::uint64_t bytes_now() const;

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
