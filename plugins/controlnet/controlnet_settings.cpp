#include "controlnet_settings.hpp"

#include <c10/core/Device.h>

#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/field_reader.hpp"

namespace sdxlhost::controlnet {
namespace {

using sdk::Error;
using sdk::ErrorCode;

[[noreturn]] void bad_setting(const std::string& key, const std::string& message) {
  throw Error(ErrorCode::ValidationError, message, "plugins.config.controlnet" + (key.empty() ? "" : "." + key));
}

}  // namespace

at::ScalarType ControlNetSettings::scalar_type() const {
  if (dtype == "bf16") return at::kBFloat16;
  if (dtype == "fp16") return at::kHalf;
  return at::kFloat;
}

at::Device ControlNetSettings::torch_device() const { return at::Device(device); }

std::string ControlNetSettings::cache_variant() const { return "controlnet:" + device + ":" + dtype; }

ControlNetSettings ControlNetSettings::from_json(const nlohmann::json& config) {
  ControlNetSettings s;
  if (config.is_null()) return s;
  sdk::FieldReader reader(config, "plugins.config.controlnet");
  reader.read_string("device", s.device);
  reader.read_string("dtype", s.dtype);
  if (s.dtype != "fp32" && s.dtype != "bf16" && s.dtype != "fp16") bad_setting("dtype", "dtype must be fp32, bf16 or fp16");
  try {
    const at::Device device(s.device);
    if (!device.is_cpu() && !device.is_cuda()) bad_setting("device", "device must be cpu or cuda:N");
  } catch (const c10::Error&) {
    bad_setting("device", "device must be cpu or cuda:N, not '" + s.device + "'");
  }
  if (s.dtype == "fp16" && s.device == "cpu")
    bad_setting("dtype", "fp16 is not implemented on the CPU by this libtorch; use fp32 or bf16");
  if (const nlohmann::json* types = reader.find("types")) {
    if (!types->is_object()) bad_setting("types", "types must be an object {type: model name}");
    sdk::FieldReader models(*types, reader.path_of("types"));
    for (const auto& item : types->items()) {
      std::string model;
      models.read_string(item.key(), model);
      if (model.empty()) models.fail(item.key(), "must be a model name (a non-empty string)");
      s.types[item.key()] = model;
    }
  }
  reader.read_int("max_units", s.max_units, 1, 1 << 20);
  reader.read_int("max_image_side", s.max_image_side, 1, 1 << 20);
  return s;
}

}  // namespace sdxlhost::controlnet
