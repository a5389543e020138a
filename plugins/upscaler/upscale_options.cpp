// Validation of the upscale options, each error naming its field.
#include "upscale_options.hpp"

#include <cmath>

#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::upscaler {
namespace {

using nlohmann::json;

[[noreturn]] void invalid(const std::string& field, const std::string& what) {
  throw sdk::Error(sdk::ErrorCode::ValidationError, what, field);
}

int read_int(const json& object, const char* key, int low, int high, const std::string& field, int fallback) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return fallback;
  const std::string path = field + "." + key;
  if (!it->is_number_integer()) invalid(path, "must be an integer");
  const auto value = it->get<std::int64_t>();
  if (value < low || value > high)
    invalid(path, "must be between " + std::to_string(low) + " and " + std::to_string(high));
  return static_cast<int>(value);
}

}  // namespace

UpscaleOptions parse_upscale_options(const json& value, const std::string& field) {
  if (!value.is_object()) invalid(field, "must be an object");
  UpscaleOptions options;
  for (const auto& [key, item] : value.items())
    if (key != "enabled" && key != "model" && key != "method" && key != "scale" && key != "tile_size" &&
        key != "tile_overlap")
      options.ignored.push_back(field + "." + key);

  if (auto it = value.find("method"); it != value.end() && !it->is_null()) {
    if (!it->is_string() || (*it != "model" && *it != "lanczos")) invalid(field + ".method", "must be \"model\" or \"lanczos\"");
    options.method = it->get<std::string>();
  }
  if (auto it = value.find("model"); it != value.end() && !it->is_null()) {
    if (!it->is_string() || it->get<std::string>().empty())
      invalid(field + ".model", "must be a model name (a file under models_root/upscalers)");
    options.model = it->get<std::string>();
  }
  if (options.method == "model" && options.model.empty())
    invalid(field + ".model", "is required (a file under models_root/upscalers) unless method is \"lanczos\"");
  if (options.method == "lanczos" && !options.model.empty()) options.ignored.push_back(field + ".model");

  if (auto it = value.find("scale"); it != value.end() && !it->is_null()) {
    if (!it->is_number()) invalid(field + ".scale", "must be a number");
    const double scale = it->get<double>();
    if (!std::isfinite(scale) || scale <= 0.0 || scale > kMaxScale)
      invalid(field + ".scale", "must be greater than 0 and at most " + std::to_string(static_cast<int>(kMaxScale)));
    options.scale = scale;
  }
  options.tiles.tile_size = read_int(value, "tile_size", 0, 4096, field, options.tiles.tile_size);
  if (options.tiles.tile_size != 0 && options.tiles.tile_size < 16)
    invalid(field + ".tile_size", "must be 0 (no tiling) or at least 16");
  const int max_overlap = options.tiles.tile_size == 0 ? 4096 : (options.tiles.tile_size - 1) / 4;
  options.tiles.tile_overlap = read_int(value, "tile_overlap", 0, 4096, field,
                                        std::min(options.tiles.tile_overlap, max_overlap));
  if (options.tiles.tile_overlap > max_overlap)
    invalid(field + ".tile_overlap", "must be less than a quarter of tile_size (at most " + std::to_string(max_overlap) + ")");
  return options;
}

std::pair<int, int> output_size(int width, int height, double factor, const std::string& field) {
  const double w = std::round(width * factor), h = std::round(height * factor);
  if (w > kMaxOutputSide || h > kMaxOutputSide)
    invalid(field + ".scale", "would make a " + std::to_string(static_cast<long long>(w)) + "x" +
                                  std::to_string(static_cast<long long>(h)) + " image; the largest side is " +
                                  std::to_string(kMaxOutputSide));
  return {std::max(1, static_cast<int>(w)), std::max(1, static_cast<int>(h))};
}

}  // namespace sdxlhost::upscaler
