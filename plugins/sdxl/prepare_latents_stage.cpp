// Stage prepare_latents: the scheduler, the per-image generators and the starting latents.
#include <ATen/ATen.h>

#include <optional>
#include <string>
#include <utility>

#include "sdxl_stage.hpp"
#include "sdxlhost/nn/denoise_window.hpp"
#include "sdxlhost/nn/image_decode.hpp"
#include "sdxlhost/pipeline/generators.hpp"
#include "sdxlhost/pipeline/init_image.hpp"
#include "sdxlhost/pipeline/sdxl_models.hpp"
#include "sdxlhost/pipeline/slots.hpp"
#include "sdxlhost/sdk/context.hpp"
#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/image.hpp"
#include "sdxlhost/sdk/registries.hpp"
#include "sdxlhost/sdk/request.hpp"
#include "sdxlhost/sdk/scheduler.hpp"

namespace sdxlhost::sdxl {
namespace {

using sdk::Error;
using sdk::ErrorCode;

/// txt2img: noise from the generators x init_noise_sigma; img2img: the VAE-encoded init image
/// noised to the first kept timestep of `strength`. Writes latents, scheduler, generators and
/// begin_index (pipeline/slots.hpp).
class PrepareLatentsStage final : public SdxlStage {
 public:
  using SdxlStage::SdxlStage;
  std::string name() const override { return "prepare_latents"; }
  std::vector<std::string> reads() const override { return {}; }
  std::vector<std::string> writes() const override {
    return {sdk::slots::kLatents, sdk::slots::kScheduler, pipeline::slots::kGenerators, pipeline::slots::kBeginIndex};
  }
  int order() const override { return 200; }

  void run(sdk::Context& context) const override {
    at::NoGradGuard no_grad;
    const auto& r = context.request();
    const auto models = pipeline::base_models(context, *settings_);
    const std::int64_t factor = models->vae->config().downscale_factor();
    const bool img2img = r.is_img2img() || context.has(sdk::slots::kInitImage);
    if (models->is_refiner() && !img2img) {
      throw Error(ErrorCode::ValidationError,
                  "'" + r.models.base +
                      "' is an SDXL refiner checkpoint (no first text encoder, 5 time ids): it refines an "
                      "image and cannot generate from noise; give data.init_image (and strength), or name it "
                      "in data.models.refiner beside a base model",
                  "data.models.base");
    }
    at::Tensor image;
    if (img2img) {
      image = pipeline::image_to_tensor(context.has(sdk::slots::kInitImage)
                                            ? context.get<sdk::Image>(sdk::slots::kInitImage)
                                            : nn::decode_base64_image(r.init_image, "data.init_image"));
      image = fit_init_image(context, image, factor);
    } else {
      for (auto [value, field] : {std::pair<int, const char*>{r.width, "data.dimensions.width"},
                                  {r.height, "data.dimensions.height"}}) {
        if (value <= 0 || value % factor != 0) {
          throw Error(ErrorCode::ValidationError,
                      "must be a positive multiple of " + std::to_string(factor) + " for this model", field);
        }
      }
    }
    std::shared_ptr<sdk::Scheduler> scheduler = context.registries().create_scheduler(
        r.scheduler, models->scheduler_config, r.scheduler_options, "data.scheduler");
    const int steps = r.hyperparameters.num_inference_steps;
    scheduler->set_timesteps(steps);

    pipeline::Generators generators = pipeline::make_generators(r.hyperparameters.seed, r.batch_size);
    at::Tensor latents;
    int begin_index = 0;
    if (img2img) {
      // diffusers' get_timesteps: the last int(steps x strength) steps (sets the begin index)
      begin_index = nn::strength_window(*scheduler, steps, r.hyperparameters.strength).begin_index;
      latents = noised_image_latents(*pipeline::job_vae(context, *settings_), *scheduler, image, begin_index,
                                     generators, settings_->tiling_for(image.size(2), image.size(3)));
    } else {
      const std::int64_t channels = models->unet->config().in_channels;
      std::vector<at::Tensor> noise;
      for (auto& generator : generators) {
        noise.push_back(generator->randn({1, channels, r.height / factor, r.width / factor}));
      }
      latents = at::cat(noise, 0) * scheduler->init_noise_sigma();
    }
    // drawn on the CPU generators (the same images on every device), then moved, as diffusers
    context.set(sdk::slots::kLatents, latents.to(models->unet->device()));
    context.set(sdk::slots::kScheduler, scheduler);
    context.set(pipeline::slots::kGenerators, std::move(generators));
    context.set(pipeline::slots::kBeginIndex, begin_index);
  }

 private:
  /// The init image at the size the job runs at (pipeline::init_image_target_size), resized when
  /// it differs. Rounding the image's own size down (no dimensions given) is said in a warning:
  /// the client gets a smaller image than it sent.
  static at::Tensor fit_init_image(sdk::Context& context, const at::Tensor& image, std::int64_t factor) {
    const auto& r = context.request();
    const std::int64_t from_h = image.size(2), from_w = image.size(3);
    const auto [height, width] = pipeline::init_image_target_size(r, from_h, from_w, factor);
    for (auto [value, field] : {std::pair<std::int64_t, const char*>{width, "data.dimensions.width"},
                                {height, "data.dimensions.height"}}) {
      if (value % factor != 0)
        throw Error(ErrorCode::ValidationError, "must be a multiple of " + std::to_string(factor) + " for this model",
                    field);
    }
    if (height == from_h && width == from_w) return image;
    if (!r.dimensions_given) {
      context.add_warning("data.init_image is " + std::to_string(from_w) + "x" + std::to_string(from_h) +
                          "; resized to " + std::to_string(width) + "x" + std::to_string(height) +
                          " (a multiple of " + std::to_string(factor) +
                          " a side); give data.dimensions to choose the size");
    }
    return pipeline::resize_image_tensor(image, height, width);
  }

  /// img2img start: per image, VAE posterior sample (eps from its generator) x scaling factor,
  /// then add_noise with a second draw at the first timestep (diffusers' prepare_latents).
  static at::Tensor noised_image_latents(const nn::AutoencoderKL& vae, sdk::Scheduler& scheduler,
                                         const at::Tensor& image, int begin_index,
                                         pipeline::Generators& generators,
                                         const std::optional<nn::VaeTiling>& tiling) {
    const nn::LatentDistribution posterior = tiling ? vae.encode_tiled(image, *tiling) : vae.encode(image);
    const at::Tensor mean = posterior.mean.to(at::kCPU, at::kFloat);
    const at::Tensor std = posterior.std.to(at::kCPU, at::kFloat);
    const at::Tensor timestep = scheduler.timesteps().slice(0, begin_index, begin_index + 1);
    std::vector<at::Tensor> rows;
    for (auto& generator : generators) {
      const at::Tensor sample = mean + std * generator->randn(mean.sizes());
      rows.push_back(sample * vae.config().scaling_factor);
    }
    const at::Tensor init = at::cat(rows, 0);
    std::vector<at::Tensor> noise;
    for (auto& generator : generators) noise.push_back(generator->randn(mean.sizes()));
    return scheduler.add_noise(init, at::cat(noise, 0),
                               timestep.repeat({static_cast<std::int64_t>(generators.size())}));
  }
};

}  // namespace

std::shared_ptr<sdk::Stage> make_prepare_latents_stage(std::shared_ptr<const pipeline::PipelineSettings> settings) {
  return std::make_shared<PrepareLatentsStage>(std::move(settings));
}

}  // namespace sdxlhost::sdxl
