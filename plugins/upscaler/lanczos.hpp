#pragma once
/// @file lanczos.hpp
/// Lanczos resizing of 8-bit images with OpenCV (`cv::resize`, INTER_LANCZOS4: an 8x8 Lanczos
/// kernel), used for `method: "lanczos"` and to bring a model's output to the requested scale.
/// Thread-safety: pure function.

#include "sdxlhost/sdk/image.hpp"

namespace sdxlhost::upscaler {

/// `image` resized to width x height (each >= 1), same channels, metadata kept.
sdk::Image resize_lanczos(const sdk::Image& image, int width, int height);

}  // namespace sdxlhost::upscaler
