#pragma once
/// @file vae.hpp
/// diffusers' AutoencoderKL (the SDXL VAE, any size): encode an image to a diagonal Gaussian
/// over latents (mean, logvar, sample with given noise) and decode latents to an image, plus
/// tiled encode/decode for images larger than the memory allows, with linear blending across
/// the tile overlaps. Parameters are bound by diffusers keys (`encoder.down_blocks.0...`).
///
/// Images are (N, 3, H, W) in [-1, 1]; latents are the VAE's raw latents: multiply by
/// `config().scaling_factor` before the UNet and divide before `decode`, as diffusers does.
///
/// Thread-safety: a loaded model is immutable; encode/decode may run concurrently.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "sdxlhost/nn/tensor_map.hpp"
#include "sdxlhost/nn/unet_blocks.hpp"
#include "sdxlhost/sdk/export.hpp"

namespace sdxlhost::nn {

/// The VAE's architecture and latent scaling.
struct SDXLHOST_API VaeConfig {
  std::int64_t in_channels = 3;      ///< image channels encoded
  std::int64_t out_channels = 3;     ///< image channels decoded
  std::int64_t latent_channels = 4;  ///< latent channels
  std::vector<std::int64_t> block_out_channels;  ///< per level (encoder order)
  std::int64_t layers_per_block = 2;             ///< encoder resnets per block (decoder: + 1)
  std::int64_t norm_num_groups = 32;  ///< GroupNorm groups everywhere
  bool mid_block_attention = true;    ///< mid_block_add_attention
  double scaling_factor = 0.13025;  ///< SDXL's; SD1.x uses 0.18215
  bool force_upcast = true;         ///< run in float32 when asked for float16
  std::int64_t sample_size = 1024;  ///< image size the model was trained at (default tile size)

  /// Image pixels per latent pixel (2^(levels - 1)).
  std::int64_t downscale_factor() const;
  /// Reads a diffusers AutoencoderKL config.json. Throws sdk::Error(ModelLoadError) naming the
  /// key for missing, ill-typed or unsupported values.
  static VaeConfig from_json(const nlohmann::json& config);
  /// Infers the architecture from the weights' shapes (diffusers keys); scaling_factor,
  /// force_upcast and sample_size keep SDXL's values (they are not in the weights).
  static VaeConfig infer(const TensorMap& weights);
  /// The diffusers config.json for this config.
  nlohmann::json to_json() const;
};

/// The encoder's output: a diagonal Gaussian over the latents (all (N, latent_channels, h, w)).
struct SDXLHOST_API LatentDistribution {
  at::Tensor parameters;  ///< quant_conv output: [mean | logvar] on dim 1
  at::Tensor mean;    ///< the posterior mean (= mode)
  at::Tensor logvar;  ///< clamped to [-30, 20]
  at::Tensor std;     ///< exp(logvar / 2)
  /// mean + std * eps (eps: standard normal noise of the same shape, e.g. from the job's
  /// generator, so that the draw matches diffusers' latent_dist.sample(generator)).
  at::Tensor sample(const at::Tensor& eps) const;
  /// The mode (= mean).
  const at::Tensor& mode() const { return mean; }
};

/// Tiling of encode/decode, in image pixels.
struct SDXLHOST_API VaeTiling {
  std::int64_t tile = 512;    ///< tile edge in image pixels (multiple of the downscale factor)
  std::int64_t overlap = 64;  ///< overlap between neighbouring tiles (multiple of the factor)
};

/// The SDXL AutoencoderKL. Create with `load`; not copyable.
class SDXLHOST_API AutoencoderKL {
 public:
  /// Binds `weights` (diffusers keys; every key must be used). With force_upcast and
  /// dtype float16 the model is held and run in float32. Throws sdk::Error(ModelLoadError)
  /// naming the key for missing, extra or mis-shaped weights.
  static std::shared_ptr<AutoencoderKL> load(const VaeConfig& config, const TensorMap& weights,
                                             at::ScalarType dtype = at::kFloat,
                                             at::Device device = at::kCPU);

  /// A model of `config` whose parameters come from `init` (random weights for tests, tools
  /// and benchmarks).
  static std::shared_ptr<AutoencoderKL> create(const VaeConfig& config, const WeightBinder::Initializer& init,
                                    at::ScalarType dtype = at::kFloat, at::Device device = at::kCPU);
  /// Every parameter by its diffusers key (views of the model's tensors).
  TensorMap state_dict() const;

  AutoencoderKL(const AutoencoderKL&) = delete;
  AutoencoderKL& operator=(const AutoencoderKL&) = delete;
  ~AutoencoderKL();

  /// Encodes images (N, in_channels, H, W) in [-1, 1]; H and W multiples of the downscale
  /// factor. Results in the model's dtype. Throws sdk::Error(ValidationError, "image").
  LatentDistribution encode(const at::Tensor& image, const TraceFn& trace = {}) const;
  /// Decodes raw (unscaled) latents (N, latent_channels, h, w) to images in about [-1, 1].
  /// Throws sdk::Error(ValidationError, "latents").
  at::Tensor decode(const at::Tensor& latents, const TraceFn& trace = {}) const;

  /// encode() tile by tile (tiles of `tiling.tile` pixels overlapping by `tiling.overlap`),
  /// blending the latent tiles linearly across the overlaps. Equal to encode() when one tile
  /// covers the image. Throws sdk::Error(ValidationError, "tiling") for bad tile sizes.
  LatentDistribution encode_tiled(const at::Tensor& image, const VaeTiling& tiling) const;
  /// decode() tile by tile (tile and overlap given in image pixels), blended the same way.
  at::Tensor decode_tiled(const at::Tensor& latents, const VaeTiling& tiling) const;

  /// The config the model was built from.
  const VaeConfig& config() const { return config_; }
  /// The dtype the model computes in (float32 when force_upcast applied).
  at::ScalarType dtype() const { return dtype_; }
  /// The device the model runs on.
  at::Device device() const { return device_; }
  /// Parameter keys (diffusers names), sorted.
  std::vector<std::string> parameter_names() const;
  /// Bytes held by the parameters.
  std::uint64_t parameter_bytes() const;

  struct Blocks;  ///< the layers (defined in vae.cpp)

 private:
  AutoencoderKL(VaeConfig config, at::ScalarType dtype, at::Device device);
  at::Tensor encode_parameters(const at::Tensor& image, const TraceFn& trace) const;

  VaeConfig config_;
  at::ScalarType dtype_;
  at::Device device_;
  std::unique_ptr<Blocks> blocks_;
  std::map<std::string, at::Tensor*> slots_;
};

}  // namespace sdxlhost::nn
