#pragma once
/// @file image.hpp
/// An 8-bit image in host memory: what stages hand to the output layer (slot "images").

#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

namespace sdxlhost::sdk {

/// Interleaved 8-bit pixels, row-major, `channels` per pixel (3 = RGB, 4 = RGBA, 1 = gray).
struct Image {
  int width = 0;
  int height = 0;
  int channels = 3;
  std::vector<std::uint8_t> pixels;  ///< width * height * channels bytes
  /// Per-image metadata that goes into the response (seed, steps, scheduler, ...).
  nlohmann::json metadata = nlohmann::json::object();
};

}  // namespace sdxlhost::sdk
