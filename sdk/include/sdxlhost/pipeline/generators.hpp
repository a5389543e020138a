#pragma once
/// @file generators.hpp
/// The per-image CPU noise generators of a job (slot `generators`, pipeline::slots::kGenerators):
/// image i of a batch draws from its own generator seeded `seed + i`, as diffusers draws with a
/// list of `torch.Generator("cpu")`, so every image is reproducible alone from its seed and the
/// same on every device. Written by the latents stage, read by the denoise stage (scheduler step
/// noise), so the draws continue in diffusers' order. A second expert (the refiner) makes fresh
/// generators from the same seeds, as diffusers' second pipeline call with its own generator.
/// Thread-safety: owned by one job's Context; not for concurrent use.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "sdxlhost/nn/noise.hpp"
#include "sdxlhost/sdk/export.hpp"
#include "sdxlhost/sdk/scheduler.hpp"

namespace sdxlhost::pipeline {

/// The generators of the images of one job, in batch order (the `generators` slot's type).
using Generators = std::vector<std::shared_ptr<nn::CpuNoiseGenerator>>;

/// `count` generators seeded `seed`, `seed + 1`, ... (data.hyperparameters.seed, batch.size).
SDXLHOST_API Generators make_generators(std::int64_t seed, int count);

/// Noise for a batch: image i's rows come from generator i, as diffusers draws with a list of
/// generators, so every image is reproducible alone from its seed.
class SDXLHOST_API BatchNoise : public sdk::NoiseSource {
 public:
  /// @param generators one per image, in batch order (kept by reference)
  /// @param device     where the noise is used: drawn on the CPU generators (so images are the
  ///                   same on every device, as diffusers' CPU generator), then moved there
  explicit BatchNoise(Generators& generators, at::Device device = at::kCPU)
      : generators_(generators), device_(device) {}
  /// Row i of `shape` (shape[0] = images) from generator i, on the device. Throws
  /// sdk::Error(InternalError) when shape[0] is not the number of generators.
  at::Tensor randn(at::IntArrayRef shape) override;

 private:
  Generators& generators_;
  at::Device device_;
};

}  // namespace sdxlhost::pipeline
