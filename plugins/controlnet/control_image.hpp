#pragma once
/// @file control_image.hpp
/// A control image as a ControlNet takes it (diffusers' `prepare_image` with do_normalize off):
/// RGB, resized to the output size, uint8 / 255 as float NCHW in [0, 1].
/// Thread-safety: pure functions.

#include <ATen/core/Tensor.h>

#include "sdxlhost/sdk/image.hpp"

namespace sdxlhost::controlnet {

/// `image` as 3-channel RGB: gray is repeated, alpha dropped. Throws sdk::Error(PluginError)
/// for an image whose pixels do not match its size or whose channel count is not 1, 3 or 4
/// (what a preprocessor returned).
sdk::Image to_rgb(const sdk::Image& image);

/// (1, 3, height, width) float in [0, 1] from RGB `image`. An image of another size is resized
/// first, stretched to exactly height x width as diffusers does: cv::resize with INTER_AREA when
/// shrinking and INTER_LANCZOS4 when enlarging (as sd-webui-controlnet; diffusers' PIL Lanczos
/// gives slightly different pixels).
at::Tensor control_tensor(const sdk::Image& image, int height, int width);

}  // namespace sdxlhost::controlnet
