// Device memory and synchronisation (see device_runtime.hpp). The CUDA parts compile only in a
// CUDA build (SDXLHOST_WITH_CUDA, set by cmake/SdxlHostTorch.cmake); a CPU build compiles the
// stubs that say "no device memory" and does nothing to wait.
#include "sdxlhost/nn/device_runtime.hpp"

#include <ATen/ATen.h>

#if SDXLHOST_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#endif

namespace sdxlhost::nn {

#if SDXLHOST_WITH_CUDA
namespace {

c10::DeviceIndex cuda_index(const c10::Device& device) {
  return device.has_index() ? device.index() : c10::cuda::current_device();
}

/// The caching allocator keeps per-device state only once CUDA is initialised, which libtorch
/// does lazily on the first CUDA tensor: make one (empty, so nothing is allocated).
void ensure_cuda_initialised(const c10::Device& device) {
  static const bool initialised = [&] {
    (void)at::empty({0}, at::TensorOptions().device(device));
    return true;
  }();
  (void)initialised;
}

/// Index of the allocator's statistics over all its pools (StatType::AGGREGATE, 0 in every
/// libtorch 2.x; spelled as a number because the enum moved between namespaces).
constexpr std::size_t kAllPools = 0;

}  // namespace

bool build_has_cuda() { return true; }

std::optional<DeviceMemory> device_memory(const c10::Device& device) {
  if (!device.is_cuda()) return std::nullopt;
  ensure_cuda_initialised(device);
  const c10::DeviceIndex index = cuda_index(device);
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index);
  DeviceMemory memory;
  memory.allocated = stats.allocated_bytes[kAllPools].current;
  memory.peak_allocated = stats.allocated_bytes[kAllPools].peak;
  memory.reserved = stats.reserved_bytes[kAllPools].current;
  const c10::cuda::CUDAGuard guard(index);
  std::size_t free = 0, total = 0;
  if (cudaMemGetInfo(&free, &total) == cudaSuccess) {
    memory.free = static_cast<std::int64_t>(free);
    memory.total = static_cast<std::int64_t>(total);
  }
  return memory;
}

void reset_peak_device_memory(const c10::Device& device) {
  if (!device.is_cuda()) return;
  ensure_cuda_initialised(device);
  c10::cuda::CUDACachingAllocator::resetPeakStats(cuda_index(device));
}

void synchronize(const c10::Device& device) {
  if (!device.is_cuda()) return;
  const c10::cuda::CUDAGuard guard(cuda_index(device));
  c10::cuda::device_synchronize();
}

#else  // CPU-only libtorch

bool build_has_cuda() { return false; }

std::optional<DeviceMemory> device_memory(const c10::Device&) { return std::nullopt; }

void reset_peak_device_memory(const c10::Device&) {}

void synchronize(const c10::Device&) {}

#endif

}  // namespace sdxlhost::nn
