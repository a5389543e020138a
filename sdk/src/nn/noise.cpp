// Reproducible CPU noise (same stream as torch.Generator("cpu").manual_seed(seed)).
#include "sdxlhost/nn/noise.hpp"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

namespace sdxlhost::nn {

CpuNoiseGenerator::CpuNoiseGenerator(std::uint64_t seed)
    : seed_(seed), generator_(at::make_generator<at::CPUGeneratorImpl>(seed)) {}

at::Tensor CpuNoiseGenerator::randn(at::IntArrayRef shape) {
  return at::randn(shape, generator_, at::TensorOptions().dtype(at::kFloat).device(at::kCPU));
}

at::Tensor CpuNoiseGenerator::rand(at::IntArrayRef shape) {
  return at::rand(shape, generator_, at::TensorOptions().dtype(at::kFloat).device(at::kCPU));
}

}  // namespace sdxlhost::nn
