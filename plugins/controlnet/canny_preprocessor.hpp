#pragma once
/// @file canny_preprocessor.hpp
/// The built-in `canny` preprocessor: OpenCV's cv::Canny (3x3 Sobel, hysteresis) as ControlNet
/// canny annotators call it (controlnet_aux, sd-webui-controlnet, the diffusers docs): directly on
/// the RGB image, where OpenCV takes per pixel the channel with the strongest gradient; the 0/255
/// edge map is stacked to 3 channels, the control image a canny ControlNet expects. Option `gray`
/// converts to gray first (cv::cvtColor RGB2GRAY), as some tools do.
/// Thread-safety: stateless; run may be called concurrently.

#include <string>
#include <vector>

#include "sdxlhost/sdk/preprocessor.hpp"

namespace sdxlhost::controlnet {

/// Canny edges: options low_threshold, high_threshold, gray, l2_gradient, aperture_size.
class CannyPreprocessor final : public sdk::Preprocessor {
 public:
  /// "canny".
  std::string name() const override { return "canny"; }
  /// Edges of `input` (1, 3 or 4 channels; alpha ignored) as a 3-channel 0/255 image of its size.
  sdk::Image run(const sdk::Image& input, const nlohmann::json& options) const override;
  /// The thresholds (OpenCV's), the gray path, L2 gradient, Sobel aperture.
  std::vector<sdk::PreprocessorOption> options() const override;
  /// One line for `capabilities`.
  std::string description() const override;
};

}  // namespace sdxlhost::controlnet
