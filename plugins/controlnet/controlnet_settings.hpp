#pragma once
/// @file controlnet_settings.hpp
/// `plugins.config.controlnet`: where ControlNets run, the names `type` stands for, and the limits
/// a request's control images and units must keep.
/// Thread-safety: immutable after from_json; shared by the plugin's stage, hook and loader.

#include <ATen/core/Tensor.h>

#include <map>
#include <string>

#include <nlohmann/json.hpp>

namespace sdxlhost::controlnet {

/// The plugin's settings (every key optional).
struct ControlNetSettings {
  std::string device = "cpu";  ///< "cpu" or "cuda:N" (the host passes its top-level device)
  std::string dtype = "fp32";  ///< fp32 | bf16 | fp16 (the host passes its top-level dtype)
  /// `type` of the seed's single form -> model name ({"canny": "controlnet-canny-sdxl-1.0"}).
  std::map<std::string, std::string> types;
  int max_units = 8;            ///< most units one request may use
  int max_image_side = 4096;    ///< longest side of a control image, as sent and after preprocessing

  /// The dtype named by `dtype`.
  at::ScalarType scalar_type() const;
  /// The device named by `device`.
  at::Device torch_device() const;
  /// The cache variant of ControlNets loaded with these settings ("controlnet:cpu:fp32").
  std::string cache_variant() const;
  /// Reads the plugin config; throws sdk::Error(ValidationError, "plugins.config.controlnet.<key>").
  static ControlNetSettings from_json(const nlohmann::json& config);
};

}  // namespace sdxlhost::controlnet
