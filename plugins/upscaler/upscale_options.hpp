#pragma once
/// @file upscale_options.hpp
/// The request's upscale options (`data.output.upscale`, or `data.upscale` of the `upscale`
/// message), validated with the dotted path of each field:
///   {"enabled": true, "model": NAME, "method": "model" | "lanczos", "scale": number,
///    "tile_size": int, "tile_overlap": int}
/// Thread-safety: pure functions.

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tiled_upscale.hpp"

namespace sdxlhost::upscaler {

/// Largest output side (the size of a decoded request image; bounds the allocation).
inline constexpr int kMaxOutputSide = 16384;
/// Largest `scale`.
inline constexpr double kMaxScale = 8.0;

/// Validated upscale options.
struct UpscaleOptions {
  std::string method = "model";  ///< "model": run the network; "lanczos": resize only
  std::string model;             ///< models_root/upscalers/NAME (method "model")
  std::optional<double> scale;   ///< final factor; unset: the model's own (2 for lanczos)
  TileSettings tiles;            ///< tile_size / tile_overlap
  std::vector<std::string> ignored;  ///< keys not understood (reported as warnings)
};

/// Parses `value` (an object; the host already turned `true` into {"enabled": true}).
/// `field` is where it sits in the request ("data.output.upscale"). Throws
/// sdk::Error(ValidationError, "<field>.<key>") for a bad value.
UpscaleOptions parse_upscale_options(const nlohmann::json& value, const std::string& field);

/// The output size for an input of width x height: round(side * factor). Throws
/// sdk::Error(ValidationError, "<field>.scale") when a side would exceed kMaxOutputSide.
std::pair<int, int> output_size(int width, int height, double factor, const std::string& field);

}  // namespace sdxlhost::upscaler
