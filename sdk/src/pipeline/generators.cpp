// Per-image CPU generators and batch noise (see generators.hpp).
#include "sdxlhost/pipeline/generators.hpp"

#include <ATen/ATen.h>

#include <string>

#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::pipeline {

Generators make_generators(std::int64_t seed, int count) {
  Generators generators;
  for (int i = 0; i < count; ++i) {
    generators.push_back(std::make_shared<nn::CpuNoiseGenerator>(static_cast<std::uint64_t>(seed + i)));
  }
  return generators;
}

at::Tensor BatchNoise::randn(at::IntArrayRef shape) {
  if (shape.empty() || shape[0] != static_cast<std::int64_t>(generators_.size())) {
    throw sdk::Error(sdk::ErrorCode::InternalError,
                     "noise for a batch of " + std::to_string(shape.empty() ? 0 : shape[0]) + " asked of " +
                         std::to_string(generators_.size()) + " generators");
  }
  std::vector<std::int64_t> one(shape.begin(), shape.end());
  one[0] = 1;
  std::vector<at::Tensor> rows;
  for (auto& generator : generators_) rows.push_back(generator->randn(one));
  const at::Tensor noise = at::cat(rows, 0);
  if (!device_.is_cuda()) return noise.to(device_);
  // Page-locked staging lets the copy run on the stream without the host waiting for the device
  // (a copy from pageable memory synchronises); libtorch keeps the staging block until it is done.
  return noise.pin_memory().to(at::TensorOptions().device(device_), /*non_blocking=*/true);
}

}  // namespace sdxlhost::pipeline
