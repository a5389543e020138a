#pragma once
/// @file init_image.hpp
/// The image-to-image source, converted to the VAE's input range: `data.init_image` (base64 PNG or
/// JPEG, decoded by nn::decode_base64_image) or an sdk::Image another stage left in the
/// "init_image" slot. Thread-safety: pure functions.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <utility>

#include "sdxlhost/sdk/export.hpp"
#include "sdxlhost/sdk/image.hpp"
#include "sdxlhost/sdk/request.hpp"

namespace sdxlhost::pipeline {

/// The image as diffusers' VaeImageProcessor.preprocess gives it: (1, 3, H, W) float32 in
/// [-1, 1] = u8 / 255 * 2 - 1. Gray is repeated to RGB; alpha is dropped.
SDXLHOST_API at::Tensor image_to_tensor(const sdk::Image& image);

/// The size image-to-image runs at, (height, width): the request's dimensions when the client
/// gave them, else the image's own size rounded down to a multiple of `factor` (the VAE's
/// downscale factor), as diffusers' VaeImageProcessor does. Refuses an image smaller than one
/// factor (`data.init_image`).
SDXLHOST_API std::pair<std::int64_t, std::int64_t> init_image_target_size(const sdk::GenerationRequest& request,
                                                                          std::int64_t image_height,
                                                                          std::int64_t image_width,
                                                                          std::int64_t factor);

/// `image` (N, C, H, W in [-1, 1]) resampled to height x width with antialiased bicubic
/// filtering (PIL-like: area-weighted when shrinking), clamped back to [-1, 1]; returned as is
/// when it already has that size.
SDXLHOST_API at::Tensor resize_image_tensor(const at::Tensor& image, std::int64_t height, std::int64_t width);

}  // namespace sdxlhost::pipeline
