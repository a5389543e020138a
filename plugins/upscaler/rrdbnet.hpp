#pragma once
/// @file rrdbnet.hpp
/// RRDBNet: the generator of ESRGAN and Real-ESRGAN (x4plus, x2plus with pixel-unshuffle),
/// in BasicSR's structure. The configuration is read from the weights (docs/upscaler.md):
///   num_feat = conv_first out channels; num_block = number of `body.N`; num_grow_ch =
///   body.0.rdb1.conv1 out channels; num_out_ch = conv_last out channels; pixel-unshuffle factor
///   u from conv_first in channels = num_in_ch * u^2 (num_in_ch = num_out_ch, as in every
///   release); n upsampling steps = number of conv_up{k}; scale = 2^n / u.
/// Forward: [pixel_unshuffle] -> conv_first -> num_block RRDB -> conv_body, + conv_first output
/// -> n x (nearest 2x, conv_up, LeakyReLU 0.2) -> conv_hr, LeakyReLU -> conv_last.
/// Thread-safety: immutable after construction (convert() excepted); forward is reentrant.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "conv_layer.hpp"
#include "upscaler_model.hpp"

namespace sdxlhost::upscaler {

/// Hyper-parameters of an RRDBNet, as detected from its weights.
struct RRDBNetConfig {
  std::int64_t num_in_ch = 3;    ///< image channels in
  std::int64_t num_out_ch = 3;   ///< image channels out
  std::int64_t num_feat = 64;    ///< trunk width
  std::int64_t num_block = 23;   ///< RRDB blocks
  std::int64_t num_grow_ch = 32; ///< growth channels of each dense block
  int unshuffle = 1;             ///< pixel-unshuffle factor at the input (1, 2 or 4)
  int upsample_steps = 2;        ///< nearest-2x + conv steps
  int scale = 4;                 ///< 2^upsample_steps / unshuffle
};

/// An RRDBNet with its weights (BasicSR names; see esrgan_keys.hpp for the other spellings).
class RRDBNet final : public UpscalerModel {
 public:
  /// Detects the configuration from `weights` (BasicSR names) and takes every tensor. Throws
  /// sdk::Error(ModelLoadError) naming `source` for missing, extra or mis-shaped tensors.
  RRDBNet(const nn::TensorMap& weights, const std::string& source);

  /// The detected configuration.
  const RRDBNetConfig& config() const { return config_; }

  std::string architecture() const override { return "RRDBNet"; }
  int scale() const override { return config_.scale; }
  int input_multiple() const override { return config_.unshuffle; }
  std::string describe() const override;
  std::uint64_t bytes() const override;
  at::Tensor forward(const at::Tensor& x, const CheckCancel& check = {}, Trace* trace = nullptr) const override;
  void convert(at::ScalarType dtype, bool channels_last) override;

 private:
  /// Five convs of one residual dense block.
  struct DenseBlock {
    Conv3x3 conv[5];
  };
  /// Three dense blocks of one RRDB.
  struct Block {
    DenseBlock rdb[3];
  };

  static RRDBNetConfig detect(WeightReader& reader, const nn::TensorMap& weights);
  at::Tensor dense_block(const DenseBlock& block, const at::Tensor& x) const;

  RRDBNetConfig config_;
  Conv3x3 conv_first_;
  std::vector<Block> body_;
  Conv3x3 conv_body_;
  std::vector<Conv3x3> conv_up_;
  Conv3x3 conv_hr_;
  Conv3x3 conv_last_;
};

}  // namespace sdxlhost::upscaler
