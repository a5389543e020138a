#pragma once
/// @file init_image.hpp
/// The image-to-image source, converted to the VAE's input range: `data.init_image` (base64 PNG or
/// JPEG, decoded by nn::decode_base64_image) or an sdk::Image another stage left in the
/// "init_image" slot. Thread-safety: pure functions.

#include <ATen/core/Tensor.h>

#include <string>

#include "sdxlhost/sdk/export.hpp"
#include "sdxlhost/sdk/image.hpp"

namespace sdxlhost::pipeline {

/// The image as diffusers' VaeImageProcessor.preprocess gives it: (1, 3, H, W) float32 in
/// [-1, 1] = u8 / 255 * 2 - 1. Gray is repeated to RGB; alpha is dropped.
SDXLHOST_API at::Tensor image_to_tensor(const sdk::Image& image);

}  // namespace sdxlhost::pipeline
