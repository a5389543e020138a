// 3x3 convolutions read from a state dict, with shape checks and unused-key detection.
#include "conv_layer.hpp"

#include <ATen/ATen.h>

#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::upscaler {

at::Tensor Conv3x3::operator()(const at::Tensor& x) const { return at::conv2d(x, weight, bias, 1, 1); }

void WeightReader::fail(const std::string& what) const {
  throw sdk::Error(sdk::ErrorCode::ModelLoadError, "upscaler '" + source_ + "': " + what);
}

at::Tensor WeightReader::take(const std::string& key) {
  const at::Tensor* tensor = weights_.find(key);
  if (!tensor) fail("missing tensor '" + key + "'");
  used_.insert(key);
  // Weights are kept as float32 for the forward (files may hold fp16/bf16).
  return tensor->is_floating_point() ? tensor->to(at::kFloat).contiguous() : *tensor;
}

Conv3x3 WeightReader::conv(const std::string& name, std::int64_t in, std::int64_t out) {
  Conv3x3 conv{take(name + ".weight"), take(name + ".bias")};
  const auto& w = conv.weight;
  if (w.dim() != 4 || w.size(2) != 3 || w.size(3) != 3)
    fail("'" + name + ".weight' has shape " + c10::str(w.sizes()) + ", expected (out, in, 3, 3)");
  if ((in >= 0 && w.size(1) != in) || (out >= 0 && w.size(0) != out))
    fail("'" + name + ".weight' has shape " + c10::str(w.sizes()) + ", expected (" + std::to_string(out) + ", " +
         std::to_string(in) + ", 3, 3)");
  if (conv.bias.dim() != 1 || conv.bias.size(0) != w.size(0))
    fail("'" + name + ".bias' has shape " + c10::str(conv.bias.sizes()) + ", expected (" + std::to_string(w.size(0)) + ")");
  return conv;
}

void WeightReader::check_all_used() const {
  std::string unused;
  int count = 0;
  for (const auto& [key, tensor] : weights_)
    if (!used_.count(key) && count++ < 5) unused += (unused.empty() ? "" : ", ") + key;
  if (count) fail(std::to_string(count) + " unexpected tensor(s) for this architecture: " + unused + (count > 5 ? ", ..." : ""));
}

std::uint64_t conv_bytes(const Conv3x3& conv) {
  return static_cast<std::uint64_t>(conv.weight.nbytes() + conv.bias.nbytes());
}

void convert_conv(Conv3x3& conv, at::ScalarType dtype, bool channels_last) {
  conv.weight = conv.weight.to(dtype);
  conv.bias = conv.bias.to(dtype);
  if (channels_last) conv.weight = conv.weight.contiguous(at::MemoryFormat::ChannelsLast);
}

}  // namespace sdxlhost::upscaler
