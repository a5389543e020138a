// Converting the image-to-image source for the VAE (decoding: sdxlhost/nn/image_decode.hpp).
#include "sdxlhost/pipeline/init_image.hpp"

#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::pipeline {

at::Tensor image_to_tensor(const sdk::Image& image) {
  if (image.width <= 0 || image.height <= 0 || image.channels < 1 ||
      image.pixels.size() != static_cast<std::size_t>(image.width) * image.height * image.channels) {
    throw sdk::Error(sdk::ErrorCode::ValidationError, "init_image has inconsistent pixel data",
                     "data.init_image");
  }
  at::Tensor hwc = at::from_blob(const_cast<std::uint8_t*>(image.pixels.data()),
                                 {image.height, image.width, image.channels}, at::kByte);
  if (image.channels == 1 || image.channels == 2) {
    hwc = hwc.slice(2, 0, 1).repeat({1, 1, 3});
  } else {
    hwc = hwc.slice(2, 0, 3);
  }
  return hwc.permute({2, 0, 1}).unsqueeze(0).to(at::kFloat) / 255.0 * 2.0 - 1.0;
}

std::pair<std::int64_t, std::int64_t> init_image_target_size(const sdk::GenerationRequest& request,
                                                             std::int64_t image_height, std::int64_t image_width,
                                                             std::int64_t factor) {
  if (request.dimensions_given) return {request.height, request.width};
  const std::int64_t height = image_height - image_height % factor;
  const std::int64_t width = image_width - image_width % factor;
  if (height <= 0 || width <= 0) {
    throw sdk::Error(sdk::ErrorCode::ValidationError,
                     "the init image is " + std::to_string(image_width) + "x" + std::to_string(image_height) +
                         ", smaller than " + std::to_string(factor) + " pixels a side",
                     "data.init_image");
  }
  return {height, width};
}

at::Tensor resize_image_tensor(const at::Tensor& image, std::int64_t height, std::int64_t width) {
  if (image.size(2) == height && image.size(3) == width) return image;
  // antialias: a plain bicubic would alias when a large photo is shrunk to the request's size
  const std::vector<std::int64_t> size{height, width};
  return at::_upsample_bicubic2d_aa(image, at::IntArrayRef(size), /*align_corners=*/false)
      .clamp(-1.0, 1.0);
}

}  // namespace sdxlhost::pipeline
