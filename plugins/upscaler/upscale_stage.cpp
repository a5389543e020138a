// The upscale stage: options -> model from the cache -> tiled network -> Lanczos to size.
#include "upscale_stage.hpp"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <cmath>

#include "lanczos.hpp"
#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/image_metadata.hpp"
#include "sdxlhost/sdk/models.hpp"
#include "sdxlhost/sdk/request.hpp"

namespace sdxlhost::upscaler {
namespace {

using nlohmann::json;

/// An sdk::Error without a field gets `field` (model files are named by the request).
[[noreturn]] void rethrow_with_field(const sdk::Error& error, const std::string& field) {
  if (!error.field().empty()) throw error;
  throw sdk::Error(error.code(), error.message(), field);
}

json describe(const sdk::Image& from, const sdk::Image& to, const UpscaleOptions& options,
              const UpscalerModel* model, double scale) {
  json info = {{"method", options.method},
               {"name", model ? options.model : "lanczos"},
               {"scale", scale},
               {"from", {{"width", from.width}, {"height", from.height}}},
               {"width", to.width},
               {"height", to.height}};
  if (model) {
    info["architecture"] = model->architecture();
    info["model_scale"] = model->scale();
    info["model"] = model->describe();
    info["tile_size"] = options.tiles.tile_size;
    info["tile_overlap"] = options.tiles.tile_overlap;
  }
  return info;
}

/// Records `info` as metadata.upscaler and A1111's post-processing entries "Postprocess
/// upscaler: NAME, Postprocess upscale by: S, Postprocess upscale to: WxH".
void record(sdk::Image& out, json info) {
  sdk::add_postprocess_infotext(out.metadata, "Postprocess upscaler", info["name"].get<std::string>());
  sdk::add_postprocess_infotext(out.metadata, "Postprocess upscale by", sdk::infotext_number(info["scale"].get<double>()));
  sdk::add_postprocess_infotext(out.metadata, "Postprocess upscale to",
                                std::to_string(out.width) + "x" + std::to_string(out.height));
  out.metadata["upscaler"] = std::move(info);
}

}  // namespace

RuntimeSettings RuntimeSettings::from_config(const json& config) {
  RuntimeSettings settings;
  const std::string prefix = "plugins.config.upscaler.";
  if (auto it = config.find("dtype"); it != config.end() && !it->is_null()) {
    const std::string dtype = it->is_string() ? it->get<std::string>() : "";
    if (dtype == "bf16" || dtype == "bfloat16") settings.dtype = at::kBFloat16;
    else if (dtype == "fp32" || dtype == "float32") settings.dtype = at::kFloat;
    else if (dtype == "fp16" || dtype == "float16")
      throw sdk::Error(sdk::ErrorCode::ValidationError, "fp16 is not implemented on the CPU by this libtorch; use fp32 or bf16", prefix + "dtype");
    else throw sdk::Error(sdk::ErrorCode::ValidationError, "must be fp32 or bf16", prefix + "dtype");
  }
  if (auto it = config.find("channels_last"); it != config.end() && !it->is_null()) {
    if (!it->is_boolean()) throw sdk::Error(sdk::ErrorCode::ValidationError, "must be true or false", prefix + "channels_last");
    settings.channels_last = it->get<bool>();
  }
  if (auto it = config.find("device"); it != config.end() && it->is_string() && it->get<std::string>() != "cpu")
    throw sdk::Error(sdk::ErrorCode::ValidationError, "only device \"cpu\" is supported by this build", prefix + "device");
  return settings;
}

std::string RuntimeSettings::variant() const {
  return std::string(dtype == at::kBFloat16 ? "bf16" : "fp32") + (channels_last ? "-nhwc" : "-nchw");
}

std::pair<std::shared_ptr<UpscalerModel>, std::uint64_t> read_model(const std::filesystem::path& file,
                                                                    const RuntimeSettings& settings) {
  auto model = load_upscaler_model(file);
  if (settings.dtype != at::kFloat || settings.channels_last) model->convert(settings.dtype, settings.channels_last);
  return {model, model->bytes()};
}

std::shared_ptr<const UpscalerModel> load_model(sdk::Context& context, const UpscaleOptions& options,
                                                const RuntimeSettings& settings, const std::string& field) {
  try {
    return context.models().load_as<UpscalerModel>(
        sdk::kUpscalers, options.model, settings.variant(), field + ".model",
        [&](const std::filesystem::path& file) { return read_model(file, settings); });
  } catch (const sdk::Error& error) {
    rethrow_with_field(error, field + ".model");
  }
}

sdk::Image upscale_image(const sdk::Image& image, const UpscaleOptions& options,
                         const std::shared_ptr<const UpscalerModel>& model, const RuntimeSettings& settings,
                         const std::string& field, const TileProgress& progress, const std::function<void()>& check) {
  if (options.method == "lanczos" || !model) {
    const double scale = options.scale.value_or(2.0);
    const auto [width, height] = output_size(image.width, image.height, scale, field);
    sdk::Image out = resize_lanczos(image, width, height);
    record(out, describe(image, out, options, nullptr, scale));
    if (progress) progress(1, 1);
    return out;
  }
  const double scale = options.scale.value_or(model->scale());
  output_size(image.width, image.height, model->scale(), field);  // the network's own output must fit too
  const auto [width, height] = output_size(image.width, image.height, scale, field);
  c10::InferenceMode inference;
  const TileNetwork network = [&](const at::Tensor& tile) {
    at::Tensor x = tile.to(settings.dtype);
    if (settings.channels_last) x = x.contiguous(at::MemoryFormat::ChannelsLast);
    return model->forward(x, check).to(at::kFloat);
  };
  sdk::Image out = tiled_upscale(image, network, {model->scale(), model->input_multiple()}, options.tiles, progress, check);
  if (out.width != width || out.height != height) out = resize_lanczos(out, width, height);
  record(out, describe(image, out, options, model.get(), scale));
  return out;
}

bool UpscaleStage::applies(const sdk::GenerationRequest& request) const {
  const json& upscale = request.output.upscale;
  if (upscale.is_null() || (upscale.is_boolean() && !upscale.get<bool>())) return false;
  parse_upscale_options(upscale, kUpscaleField);  // refuse bad options before the job is queued
  return true;
}

void UpscaleStage::run(sdk::Context& context) const {
  const UpscaleOptions options = parse_upscale_options(context.request().output.upscale, kUpscaleField);
  for (const auto& key : options.ignored) context.add_warning(key + " is not an upscale option and was ignored");
  auto& images = context.get<std::vector<sdk::Image>>(sdk::slots::kImages);
  std::shared_ptr<const UpscalerModel> model;
  if (options.method == "model") model = load_model(context, options, settings_, kUpscaleField);
  int total = 0;
  for (const auto& image : images)
    total += model ? tile_count(image.width, image.height, {model->scale(), model->input_multiple()}, options.tiles) : 1;
  int before = 0;
  for (auto& image : images) {
    context.throw_if_cancelled();
    const TileProgress progress = [&](int done, int) { context.report_progress(name(), before + done, total); };
    image = upscale_image(image, options, model, settings_, kUpscaleField, progress, [&] { context.throw_if_cancelled(); });
    before += model ? tile_count(image.metadata["upscaler"]["from"]["width"].get<int>(),
                                 image.metadata["upscaler"]["from"]["height"].get<int>(),
                                 {model->scale(), model->input_multiple()}, options.tiles)
                    : 1;
  }
  context.log(sdk::LogLevel::Info, "upscaled " + std::to_string(images.size()) + " image(s) with " +
                                       (model ? model->describe() : std::string("Lanczos")));
}

}  // namespace sdxlhost::upscaler
