// Lanczos resizing through OpenCV's imgproc.
#include "lanczos.hpp"

#include <opencv2/imgproc.hpp>

namespace sdxlhost::upscaler {

sdk::Image resize_lanczos(const sdk::Image& image, int width, int height) {
  sdk::Image out;
  out.width = width;
  out.height = height;
  out.channels = image.channels;
  out.metadata = image.metadata;
  out.pixels.resize(static_cast<std::size_t>(width) * height * image.channels);
  const cv::Mat source(image.height, image.width, CV_8UC(image.channels), const_cast<std::uint8_t*>(image.pixels.data()));
  cv::Mat target(height, width, CV_8UC(image.channels), out.pixels.data());
  cv::resize(source, target, cv::Size(width, height), 0, 0, cv::INTER_LANCZOS4);
  return out;
}

}  // namespace sdxlhost::upscaler
