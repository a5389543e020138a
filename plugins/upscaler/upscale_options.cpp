// Validation of the upscale options, each error naming its field.
#include "upscale_options.hpp"

#include <algorithm>
#include <cmath>

#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/field_reader.hpp"

namespace sdxlhost::upscaler {
namespace {

using nlohmann::json;

[[noreturn]] void invalid(const std::string& field, const std::string& what) {
  throw sdk::Error(sdk::ErrorCode::ValidationError, what, field);
}

}  // namespace

UpscaleOptions parse_upscale_options(const json& value, const std::string& field) {
  sdk::FieldReader reader(value, field);  // "must be an object"
  UpscaleOptions options;
  reader.accept("enabled");  // the host's (it turned `true` into {"enabled": true})

  reader.read_choice("method", options.method, {"model", "lanczos"});
  if (reader.find("model")) {
    reader.read_string("model", options.model);
    if (options.model.empty()) reader.fail("model", "must be a model name (a file under models_root/upscalers)");
  }
  if (options.method == "model" && options.model.empty())
    reader.fail("model", "is required (a file under models_root/upscalers) unless method is \"lanczos\"");

  double scale = 0.0;
  if (reader.find("scale")) {
    reader.read_number("scale", scale, 0.0, kMaxScale, /*exclusive_min=*/true);
    options.scale = scale;
  }
  reader.read_int("tile_size", options.tiles.tile_size, 0, 4096);
  if (options.tiles.tile_size != 0 && options.tiles.tile_size < 16)
    reader.fail("tile_size", "must be 0 (no tiling) or at least 16");
  const int max_overlap = options.tiles.tile_size == 0 ? 4096 : (options.tiles.tile_size - 1) / 4;
  options.tiles.tile_overlap = std::min(options.tiles.tile_overlap, max_overlap);
  reader.read_int("tile_overlap", options.tiles.tile_overlap, 0, 4096);
  if (options.tiles.tile_overlap > max_overlap)
    reader.fail("tile_overlap", "must be less than a quarter of tile_size (at most " + std::to_string(max_overlap) + ")");

  options.ignored = reader.unknown_fields();  // every key above was read, in the object's key order
  if (options.method == "lanczos" && !options.model.empty()) options.ignored.push_back(reader.path_of("model"));
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
