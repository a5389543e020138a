// Stage vae_decode: latents to 8-bit RGB images with their metadata.
#include <ATen/ATen.h>

#include "sdxl_stage.hpp"
#include "sdxlhost/pipeline/sdxl_models.hpp"
#include "sdxlhost/pipeline/slots.hpp"
#include "sdxlhost/sdk/context.hpp"
#include "sdxlhost/sdk/image.hpp"
#include "sdxlhost/sdk/request.hpp"

namespace sdxlhost::sdxl {
namespace {

/// Decodes the `latents` slot with the job's VAE (models.vae or the base checkpoint's, tiled when
/// the settings say so) into the `images` slot.
class VaeDecodeStage final : public SdxlStage {
 public:
  using SdxlStage::SdxlStage;
  std::string name() const override { return "vae_decode"; }
  std::vector<std::string> reads() const override { return {sdk::slots::kLatents}; }
  std::vector<std::string> writes() const override { return {sdk::slots::kImages}; }
  int order() const override { return 500; }

  void run(sdk::Context& context) const override {
    at::NoGradGuard no_grad;
    const auto& r = context.request();
    const auto vae = pipeline::job_vae(context, *settings_);
    const at::Tensor latents = context.get<at::Tensor>(sdk::slots::kLatents);
    context.throw_if_cancelled();
    const std::int64_t factor = vae->config().downscale_factor();
    const auto tiling = settings_->tiling_for(latents.size(2) * factor, latents.size(3) * factor);
    const at::Tensor scaled = latents / vae->config().scaling_factor;
    const at::Tensor raw = tiling ? vae->decode_tiled(scaled, *tiling) : vae->decode(scaled);
    // diffusers: (x / 2 + 0.5).clamp(0, 1) -> NHWC -> round(x * 255) as uint8
    const at::Tensor pixels = at::round(at::clamp(raw.to(at::kCPU, at::kFloat) / 2 + 0.5, 0, 1) * 255)
                                  .to(at::kByte)
                                  .permute({0, 2, 3, 1})
                                  .contiguous();
    std::vector<sdk::Image> images;
    for (std::int64_t i = 0; i < pixels.size(0); ++i) {
      sdk::Image image;
      image.height = static_cast<int>(pixels.size(1));
      image.width = static_cast<int>(pixels.size(2));
      image.channels = static_cast<int>(pixels.size(3));
      const std::uint8_t* data = pixels[i].data_ptr<std::uint8_t>();
      image.pixels.assign(data, data + pixels[i].numel());
      image.metadata = {{"seed", r.hyperparameters.seed + i},
                        {"steps", r.hyperparameters.num_inference_steps},
                        {"guidance_scale", r.hyperparameters.guidance_scale},
                        {"scheduler", r.scheduler},
                        {"model_info",
                         {{"base_model", r.models.base},
                          // named only when a second expert ran (it wrote the handoff): a refiner
                          // skipped under on_disabled_feature "warn" is not reported as used
                          {"refiner_model", context.has(pipeline::slots::kExpertHandoff) ? r.models.refiner : ""},
                          {"vae_model", r.models.vae}}}};
      images.push_back(std::move(image));
    }
    context.set(sdk::slots::kImages, std::move(images));
  }
};

}  // namespace

std::shared_ptr<sdk::Stage> make_vae_decode_stage(std::shared_ptr<const pipeline::PipelineSettings> settings) {
  return std::make_shared<VaeDecodeStage>(std::move(settings));
}

}  // namespace sdxlhost::sdxl
