#include "prepare_stage.hpp"

#include "control_image.hpp"
#include "controlnet_loader.hpp"
#include "controlnet_request.hpp"
#include "prepared_control.hpp"
#include "sdxlhost/nn/image_decode.hpp"
#include "sdxlhost/sdk/context.hpp"
#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/registries.hpp"
#include "sdxlhost/sdk/request.hpp"

namespace sdxlhost::controlnet {
namespace {

using sdk::Error;
using sdk::ErrorCode;

void check_side_limit(const sdk::Image& image, int max_side, ErrorCode code, const std::string& what,
                      const std::string& field) {
  if (image.width <= max_side && image.height <= max_side) return;
  throw Error(code,
              what + " is " + std::to_string(image.width) + "x" + std::to_string(image.height) +
                  "; its sides may be at most " + std::to_string(max_side) +
                  " (plugins.config.controlnet.max_image_side)",
              field);
}

std::string known_preprocessors(const sdk::Registries& registries) {
  std::string names;
  for (const auto& name : registries.preprocessor_names()) names += (names.empty() ? "" : ", ") + name;
  return names.empty() ? "none registered" : names;
}

/// The unit's control image: decoded, then through its preprocessor when it names one.
sdk::Image control_image(const ControlUnit& unit, const sdk::Registries& registries, int max_side) {
  sdk::Image image = nn::decode_base64_image(unit.image, unit.image_field);
  check_side_limit(image, max_side, ErrorCode::ValidationError, "the control image", unit.image_field);
  const auto& choice = unit.preprocessor;
  if (choice.name.empty()) return image;
  const auto preprocessor = registries.preprocessor(choice.name);
  if (!preprocessor)
    throw Error(ErrorCode::ValidationError,
                "unknown preprocessor '" + choice.name + "' (known: " + known_preprocessors(registries) + ")",
                choice.name_field);
  sdk::Image processed = to_rgb(preprocessor->apply(image, choice.options, choice.field));
  check_side_limit(processed, max_side, ErrorCode::PluginError,
                   "the image preprocessor '" + choice.name + "' returned", choice.field);
  return processed;
}

}  // namespace

std::vector<std::string> PrepareStage::writes() const { return {kPreparedSlot}; }

bool PrepareStage::applies(const sdk::GenerationRequest& request) const {
  return !parse_controlnet_request(request.controlnet, *settings_).units.empty();
}

void PrepareStage::run(sdk::Context& context) const {
  const ControlNetRequest request = parse_controlnet_request(context.request().controlnet, *settings_);
  for (const auto& warning : request.warnings) context.add_warning(warning);
  PreparedControl prepared;
  prepared.guess_mode = request.guess_mode;
  const int total = static_cast<int>(request.units.size());
  for (int i = 0; i < total; ++i) {
    context.throw_if_cancelled();
    const ControlUnit& unit = request.units[static_cast<std::size_t>(i)];
    PreparedUnit ready;
    ready.control = control_image(unit, context.registries(), settings_->max_image_side);
    ready.model = load_controlnet(context.models(), unit.model, *settings_, unit.model_field);
    ready.conditioning_scale = unit.conditioning_scale;
    ready.guidance_start = unit.guidance_start;
    ready.guidance_end = unit.guidance_end;
    prepared.units.push_back(std::move(ready));
    context.report_progress(name(), i + 1, total);
  }
  context.set(kPreparedSlot, std::move(prepared));
}

}  // namespace sdxlhost::controlnet
