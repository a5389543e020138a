#include "controlnet_settings.hpp"

#include <c10/core/Device.h>

#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::controlnet {
namespace {

using sdk::Error;
using sdk::ErrorCode;

[[noreturn]] void bad_setting(const std::string& key, const std::string& message) {
  throw Error(ErrorCode::ValidationError, message, "plugins.config.controlnet" + (key.empty() ? "" : "." + key));
}

void read_positive(const nlohmann::json& config, const char* key, int& out) {
  if (!config.contains(key)) return;
  const auto& value = config[key];
  if (!value.is_number_integer() || value.get<long long>() < 1 || value.get<long long>() > (1 << 20))
    bad_setting(key, std::string(key) + " must be a positive integer");
  out = value.get<int>();
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
  if (!config.is_object()) bad_setting("", "plugins.config.controlnet must be an object");
  for (const char* key : {"device", "dtype"}) {
    if (!config.contains(key)) continue;
    if (!config[key].is_string()) bad_setting(key, std::string(key) + " must be a string");
    (std::string(key) == "device" ? s.device : s.dtype) = config[key].get<std::string>();
  }
  if (s.dtype != "fp32" && s.dtype != "bf16" && s.dtype != "fp16") bad_setting("dtype", "dtype must be fp32, bf16 or fp16");
  try {
    const at::Device device(s.device);
    if (!device.is_cpu() && !device.is_cuda()) bad_setting("device", "device must be cpu or cuda:N");
  } catch (const c10::Error&) {
    bad_setting("device", "device must be cpu or cuda:N, not '" + s.device + "'");
  }
  if (s.dtype == "fp16" && s.device == "cpu")
    bad_setting("dtype", "fp16 is not implemented on the CPU by this libtorch; use fp32 or bf16");
  if (config.contains("types")) {
    const auto& types = config["types"];
    if (!types.is_object()) bad_setting("types", "types must be an object {type: model name}");
    for (const auto& [type, model] : types.items()) {
      if (!model.is_string() || model.get<std::string>().empty())
        bad_setting("types." + type, "must be a model name (a non-empty string)");
      s.types[type] = model.get<std::string>();
    }
  }
  read_positive(config, "max_units", s.max_units);
  read_positive(config, "max_image_side", s.max_image_side);
  return s;
}

}  // namespace sdxlhost::controlnet
