#pragma once
/// @file conv_layer.hpp
/// A 3x3, stride 1, padding 1 convolution with bias (the only layer shape the ESRGAN family
/// uses), read from a state dict with its shape checked, and the bookkeeping that lets a model
/// refuse keys it did not use. Thread-safety: immutable after loading.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <set>
#include <string>

#include "sdxlhost/nn/tensor_map.hpp"

namespace sdxlhost::upscaler {

/// Weights of one 3x3 convolution.
struct Conv3x3 {
  at::Tensor weight;  ///< (out, in, 3, 3)
  at::Tensor bias;    ///< (out)
  /// Output channels.
  std::int64_t out_channels() const { return weight.size(0); }
  /// Input channels.
  std::int64_t in_channels() const { return weight.size(1); }
  /// conv2d(x, weight, bias, stride 1, padding 1).
  at::Tensor operator()(const at::Tensor& x) const;
};

/// Reads state-dict entries and remembers which were used.
class WeightReader {
 public:
  /// @param source file name for messages
  WeightReader(const nn::TensorMap& weights, std::string source) : weights_(weights), source_(std::move(source)) {}
  /// True when `key` exists.
  bool has(const std::string& key) const { return weights_.contains(key); }
  /// The tensor `key` (marked used). Throws sdk::Error(ModelLoadError) when absent.
  at::Tensor take(const std::string& key);
  /// `<name>.weight` / `<name>.bias` as a 3x3 conv; `in`/`out` < 0 = not checked. Throws
  /// sdk::Error(ModelLoadError) naming the key when a shape is wrong.
  Conv3x3 conv(const std::string& name, std::int64_t in = -1, std::int64_t out = -1);
  /// Throws sdk::Error(ModelLoadError) listing keys never taken (a layout this model does not know).
  void check_all_used() const;
  /// Throws sdk::Error(ModelLoadError) "upscaler '<source>': <what>".
  [[noreturn]] void fail(const std::string& what) const;

 private:
  const nn::TensorMap& weights_;
  std::string source_;
  std::set<std::string> used_;
};

/// Bytes held by a conv's tensors.
std::uint64_t conv_bytes(const Conv3x3& conv);
/// Converts a conv to `dtype`, channels-last when asked.
void convert_conv(Conv3x3& conv, at::ScalarType dtype, bool channels_last);

}  // namespace sdxlhost::upscaler
