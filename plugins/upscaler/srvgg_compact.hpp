#pragma once
/// @file srvgg_compact.hpp
/// SRVGGNetCompact: Real-ESRGAN's small VGG-style network (`realesr-general-x4v3`,
/// `realesr-animevideov3`). Weights `body.N`: conv(in, feat), PReLU(feat), then num_conv x
/// (conv(feat, feat), PReLU(feat)), then conv(feat, out * scale^2). Forward: the body, then
/// pixel-shuffle by `scale`, plus the input upsampled by nearest neighbour (the network learns
/// a residual). Configuration from the weights: num_feat = body.0 out channels, num_conv from
/// the highest index, scale = sqrt(last conv out channels / out channels), out = in channels.
/// Only PReLU activations are readable from weights (ReLU/LeakyReLU variants have no tensors
/// that say which), so other activations are refused.
/// Thread-safety: immutable after construction (convert() excepted); forward is reentrant.

#include <cstdint>
#include <string>
#include <vector>

#include "conv_layer.hpp"
#include "upscaler_model.hpp"

namespace sdxlhost::upscaler {

/// Hyper-parameters of an SRVGGNetCompact, as detected from its weights.
struct SRVGGNetCompactConfig {
  std::int64_t num_in_ch = 3;   ///< image channels in
  std::int64_t num_out_ch = 3;  ///< image channels out
  std::int64_t num_feat = 64;   ///< width
  std::int64_t num_conv = 16;   ///< convs between the first and the last
  int scale = 4;                ///< pixel-shuffle factor
};

/// An SRVGGNetCompact with its weights.
class SRVGGNetCompact final : public UpscalerModel {
 public:
  /// Detects the configuration from `weights` and takes every tensor. Throws
  /// sdk::Error(ModelLoadError) naming `source` for missing, extra or mis-shaped tensors.
  SRVGGNetCompact(const nn::TensorMap& weights, const std::string& source);

  /// True when `weights` have the `body.0` conv + `body.1` PReLU signature of this network.
  static bool matches(const nn::TensorMap& weights);

  /// The detected configuration.
  const SRVGGNetCompactConfig& config() const { return config_; }

  std::string architecture() const override { return "SRVGGNetCompact"; }
  int scale() const override { return config_.scale; }
  std::string describe() const override;
  std::uint64_t bytes() const override;
  at::Tensor forward(const at::Tensor& x, const CheckCancel& check = {}, Trace* trace = nullptr) const override;
  void convert(at::ScalarType dtype, bool channels_last) override;

 private:
  SRVGGNetCompactConfig config_;
  std::vector<Conv3x3> convs_;       // num_conv + 2
  std::vector<at::Tensor> prelus_;   // num_conv + 1, each (num_feat)
};

}  // namespace sdxlhost::upscaler
