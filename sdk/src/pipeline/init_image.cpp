// Converting the image-to-image source for the VAE (decoding: sdxlhost/nn/image_decode.hpp).
#include "sdxlhost/pipeline/init_image.hpp"

#include <ATen/ATen.h>

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

}  // namespace sdxlhost::pipeline
