#include "control_image.hpp"

#include <ATen/ATen.h>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::controlnet {

using sdk::Error;
using sdk::ErrorCode;

sdk::Image to_rgb(const sdk::Image& image) {
  const std::size_t expected = static_cast<std::size_t>(image.width) * image.height * image.channels;
  if (image.width <= 0 || image.height <= 0 || image.pixels.size() != expected)
    throw Error(ErrorCode::PluginError, "the control image has no pixels or a size that does not match them");
  if (image.channels == 3) return image;
  if (image.channels != 1 && image.channels != 4)
    throw Error(ErrorCode::PluginError,
                "the control image has " + std::to_string(image.channels) + " channels (1, 3 or 4 expected)");
  sdk::Image rgb;
  rgb.width = image.width;
  rgb.height = image.height;
  rgb.channels = 3;
  rgb.pixels.resize(static_cast<std::size_t>(image.width) * image.height * 3);
  const std::size_t pixels = static_cast<std::size_t>(image.width) * image.height;
  for (std::size_t p = 0; p < pixels; ++p)
    for (int c = 0; c < 3; ++c)
      rgb.pixels[p * 3 + c] = image.pixels[p * image.channels + (image.channels == 1 ? 0 : c)];
  return rgb;
}

at::Tensor control_tensor(const sdk::Image& image, int height, int width) {
  const sdk::Image rgb = to_rgb(image);
  cv::Mat mat(rgb.height, rgb.width, CV_8UC3, const_cast<std::uint8_t*>(rgb.pixels.data()));
  cv::Mat sized = mat;
  if (rgb.height != height || rgb.width != width) {
    const bool shrinking = width < rgb.width && height < rgb.height;
    cv::resize(mat, sized, cv::Size(width, height), 0, 0, shrinking ? cv::INTER_AREA : cv::INTER_LANCZOS4);
  }
  const at::Tensor u8 = at::from_blob(sized.data, {height, width, 3}, at::kByte);
  // diffusers: uint8 -> float / 255, HWC -> CHW; no normalisation to [-1, 1] for control images
  return (u8.to(at::kFloat) / 255.0f).permute({2, 0, 1}).unsqueeze(0).contiguous();
}

}  // namespace sdxlhost::controlnet
