#pragma once
/// @file noise.hpp
/// Reproducible noise: a CPU generator seeded like `torch.Generator("cpu").manual_seed(seed)`, so
/// `randn` gives PyTorch's exact values for the same seed, shape and call order (diffusers
/// pipelines draw their initial latents and scheduler noise this way). Noise is always drawn on
/// the CPU and then moved, so results do not depend on the compute device.
///
/// Thread-safety: draws lock the generator (libtorch's CPU generator mutex), but the values then
/// depend on the interleaving: give each job its own generator.

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>

#include "sdxlhost/sdk/export.hpp"
#include "sdxlhost/sdk/scheduler.hpp"

namespace sdxlhost::nn {

/// A seeded CPU generator; also the NoiseSource that stochastic schedulers draw from.
class SDXLHOST_API CpuNoiseGenerator : public sdk::NoiseSource {
 public:
  /// Seeds like torch.Generator().manual_seed(seed) (any 64-bit value).
  explicit CpuNoiseGenerator(std::uint64_t seed);

  /// float32 standard normal values of `shape` on the CPU (torch.randn(shape, generator=g)).
  at::Tensor randn(at::IntArrayRef shape) override;
  /// float32 uniform [0, 1) values of `shape` on the CPU (torch.rand(shape, generator=g)).
  at::Tensor rand(at::IntArrayRef shape);
  /// The seed given at construction.
  std::uint64_t seed() const { return seed_; }
  /// The underlying libtorch generator (for other at:: random functions).
  at::Generator& generator() { return generator_; }

 private:
  std::uint64_t seed_;
  at::Generator generator_;
};

}  // namespace sdxlhost::nn
