#include "canny_preprocessor.hpp"

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::controlnet {
namespace {

using sdk::Error;
using sdk::ErrorCode;

/// |dx| + |dy| of a 3x3 Sobel on 8-bit input reaches 4 x 255 x 2.
constexpr double kMaxThreshold = 2040.0;

/// The input as an OpenCV matrix sharing its pixels (RGB or gray; RGBA without its alpha).
cv::Mat to_mat(const sdk::Image& input) {
  if (input.width <= 0 || input.height <= 0 ||
      input.pixels.size() != static_cast<std::size_t>(input.width) * input.height * input.channels)
    throw Error(ErrorCode::ValidationError, "the image has no pixels or a size that does not match them");
  const int type = input.channels == 1 ? CV_8UC1 : input.channels == 3 ? CV_8UC3 : input.channels == 4 ? CV_8UC4 : -1;
  if (type < 0) throw Error(ErrorCode::ValidationError, "the image must have 1, 3 or 4 channels");
  cv::Mat mat(input.height, input.width, type, const_cast<std::uint8_t*>(input.pixels.data()));
  if (input.channels != 4) return mat;
  cv::Mat rgb;
  cv::cvtColor(mat, rgb, cv::COLOR_RGBA2RGB);
  return rgb;
}

}  // namespace

std::vector<sdk::PreprocessorOption> CannyPreprocessor::options() const {
  return {
      {"low_threshold", "number", 100, 0.0, kMaxThreshold, {}, "hysteresis: weaker gradients are never edges"},
      {"high_threshold", "number", 200, 0.0, kMaxThreshold, {}, "hysteresis: stronger gradients always are"},
      {"gray", "boolean", false, std::nullopt, std::nullopt, {},
       "convert RGB to gray (cv::cvtColor RGB2GRAY) first instead of using the strongest channel"},
      {"l2_gradient", "boolean", false, std::nullopt, std::nullopt, {},
       "gradient magnitude sqrt(dx^2 + dy^2) instead of |dx| + |dy|"},
      {"aperture_size", "integer", 3, 3.0, 7.0, {}, "Sobel aperture: 3, 5 or 7"},
  };
}

std::string CannyPreprocessor::description() const {
  return "Canny edges (OpenCV cv::Canny on the RGB image), stacked to a 3-channel 0/255 control image";
}

sdk::Image CannyPreprocessor::run(const sdk::Image& input, const nlohmann::json& options) const {
  const double low = options.at("low_threshold").get<double>();
  const double high = options.at("high_threshold").get<double>();
  const int aperture = options.at("aperture_size").get<int>();
  if (low > high)
    throw Error(ErrorCode::ValidationError, "must not exceed high_threshold (" + nlohmann::json(high).dump() + ")",
                "low_threshold");
  if (aperture % 2 == 0) throw Error(ErrorCode::ValidationError, "must be 3, 5 or 7", "aperture_size");
  cv::Mat source = to_mat(input);
  if (options.at("gray").get<bool>() && source.channels() == 3) {
    cv::Mat gray;
    cv::cvtColor(source, gray, cv::COLOR_RGB2GRAY);
    source = gray;
  }
  cv::Mat edges;
  cv::Canny(source, edges, low, high, aperture, options.at("l2_gradient").get<bool>());
  // ControlNet canny models take the edge map as an RGB image: the same map in every channel.
  cv::Mat stacked;
  cv::cvtColor(edges, stacked, cv::COLOR_GRAY2RGB);
  sdk::Image out;
  out.width = stacked.cols;
  out.height = stacked.rows;
  out.channels = 3;
  out.pixels.assign(stacked.data, stacked.data + stacked.total() * stacked.elemSize());
  return out;
}

}  // namespace sdxlhost::controlnet
