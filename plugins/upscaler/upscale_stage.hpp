#pragma once
/// @file upscale_stage.hpp
/// The post-process stage (order band 600, feature "upscaler"): enlarges every image in the
/// "images" slot as `data.output.upscale` asks, with a network from models_root/upscalers
/// (through the host's model cache) or with Lanczos alone. The host's `upscale` message runs
/// the same stage over the image it was sent. Progress is reported per tile.
/// Thread-safety: shared by all jobs; keeps no per-job state.

#include <memory>
#include <string>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include "sdxlhost/sdk/context.hpp"
#include "sdxlhost/sdk/image.hpp"
#include "sdxlhost/sdk/stage.hpp"
#include "upscale_options.hpp"
#include "upscaler_model.hpp"

namespace sdxlhost::upscaler {

/// Where the options sit in an inference request (errors name fields below it).
inline constexpr const char* kUpscaleField = "data.output.upscale";

/// How the plugin runs networks (`plugins.config.upscaler`).
struct RuntimeSettings {
  at::ScalarType dtype = at::kFloat;  ///< `dtype`: fp32 (default) or bf16
  bool channels_last = false;         ///< `channels_last`: NHWC convolutions (measured slower here)

  /// Reads the plugin's config section; throws sdk::Error(ValidationError,
  /// "plugins.config.upscaler.<key>") for a bad value.
  static RuntimeSettings from_config(const nlohmann::json& config);
  /// Cache variant name of a model converted with these settings ("fp32-nhwc").
  std::string variant() const;
};

/// Upscales one image: the network (when `model` is set) tiled, then Lanczos to the requested
/// scale when it differs from the network's; Lanczos alone for method "lanczos". Adds
/// `metadata.upscaler` (method, model, architecture, scale, from and to sizes).
/// `progress(done, total)` counts tiles. Throws sdk::Error naming `field`'s sub-fields.
sdk::Image upscale_image(const sdk::Image& image, const UpscaleOptions& options,
                         const std::shared_ptr<const UpscalerModel>& model, const RuntimeSettings& settings,
                         const std::string& field, const TileProgress& progress = {},
                         const std::function<void()>& check = {});

/// Loads the model an option set names through the context's model cache (kind "upscalers").
std::shared_ptr<const UpscalerModel> load_model(sdk::Context& context, const UpscaleOptions& options,
                                                const RuntimeSettings& settings, const std::string& field);

/// Loads a model file and converts it as `settings` say (the cache's loader and the preloader).
std::pair<std::shared_ptr<UpscalerModel>, std::uint64_t> read_model(const std::filesystem::path& file,
                                                                    const RuntimeSettings& settings);

/// The stage.
class UpscaleStage final : public sdk::Stage {
 public:
  /// @param settings how networks run
  explicit UpscaleStage(RuntimeSettings settings) : settings_(settings) {}
  std::string name() const override { return "upscale"; }
  std::vector<std::string> reads() const override { return {sdk::slots::kImages}; }
  std::vector<std::string> writes() const override { return {sdk::slots::kImages}; }
  int order() const override { return 600; }
  std::string feature() const override { return "upscaler"; }
  /// True when data.output.upscale is set; validates it (ValidationError with the field).
  bool applies(const sdk::GenerationRequest& request) const override;
  void run(sdk::Context& context) const override;

 private:
  RuntimeSettings settings_;
};

}  // namespace sdxlhost::upscaler
