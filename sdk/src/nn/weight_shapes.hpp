#pragma once
// Internal to sdxlhost_nn: lookups the config inferences (UNet, VAE, CLIP) make on weight shapes.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

#include "sdxlhost/nn/tensor_map.hpp"
#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::nn::detail {

/// How many of `before + 0 + after`, `before + 1 + after`, ... are present, counting from 0.
inline std::int64_t count_indexed(const TensorMap& w, const std::string& before, const std::string& after) {
  std::int64_t n = 0;
  while (w.contains(before + std::to_string(n) + after)) ++n;
  return n;
}

/// The tensor `key`, which inferring `model`'s config needs; sdk::Error(ModelLoadError) naming
/// the key and the source when it is absent.
inline const at::Tensor& required_for_config(const TensorMap& w, const std::string& key, const char* model) {
  const at::Tensor* t = w.find(key);
  if (t == nullptr) {
    throw sdk::Error(sdk::ErrorCode::ModelLoadError,
                     std::string(model) + ": cannot infer the config: '" + key + "' is missing from " + w.source());
  }
  return *t;
}

}  // namespace sdxlhost::nn::detail
