#pragma once
/// @file init_image.hpp
/// The image-to-image source: `data.init_image` as base64 PNG (optionally a `data:image/png;base64,`
/// URL), or an sdk::Image another stage left in the "init_image" slot; converted to the VAE's
/// input range. Thread-safety: pure functions.

#include <ATen/core/Tensor.h>

#include <string>

#include "sdxlhost/sdk/image.hpp"

namespace sdxlhost::sdxl {

/// Decodes base64 text (standard alphabet, '=' padding, whitespace ignored). Throws
/// sdk::Error(ValidationError, `field`) for other characters.
std::string decode_base64(const std::string& text, const std::string& field);

/// Decodes PNG bytes to 8-bit RGB. Throws sdk::Error(ValidationError, `field`) when the bytes are
/// not a readable PNG.
sdk::Image decode_png_rgb(const std::string& bytes, const std::string& field);

/// The image as diffusers' VaeImageProcessor.preprocess gives it: (1, 3, H, W) float32 in
/// [-1, 1] = u8 / 255 * 2 - 1. Gray is repeated to RGB; alpha is dropped.
at::Tensor image_to_tensor(const sdk::Image& image);

}  // namespace sdxlhost::sdxl
