#pragma once
/// @file device_runtime.hpp
/// What the compute device can say about itself: memory (the CUDA caching allocator's statistics
/// and the driver's free / total memory) and waiting for queued work. The only CUDA-specific
/// code of the SDK lives behind these functions (device_runtime.cpp, compiled with CUDA only when
/// the libtorch found at configure time has it: cmake/SdxlHostTorch.cmake), so everything else
/// builds the same against Debian's CPU libtorch and a CUDA PyTorch.
///
/// Thread-safety: every function may be called from any thread.

#include <c10/core/Device.h>

#include <cstdint>
#include <optional>

#include "sdxlhost/sdk/export.hpp"

namespace sdxlhost::nn {

/// Memory of one CUDA device, in bytes.
struct DeviceMemory {
  std::int64_t allocated = 0;       ///< held by live tensors (allocator: allocated_bytes, current)
  std::int64_t peak_allocated = 0;  ///< most ever held by tensors (since start or the last reset)
  std::int64_t reserved = 0;        ///< taken from the driver by the allocator (tensors + its cache)
  std::int64_t free = 0;            ///< the driver's free memory (cudaMemGetInfo; all processes)
  std::int64_t total = 0;           ///< the device's memory
  /// What this process could still use: the driver's free memory plus what the allocator
  /// caches without a tensor in it (reserved - allocated).
  std::int64_t usable() const { return free + (reserved - allocated); }
};

/// True when this build's libtorch has CUDA (compiled with SDXLHOST_WITH_CUDA).
SDXLHOST_API bool build_has_cuda();

/// The memory of `device` when it is a CUDA device this build can use; nullopt for the CPU (its
/// memory is the host's) and in a CPU-only build. Initialises CUDA on first use.
SDXLHOST_API std::optional<DeviceMemory> device_memory(const c10::Device& device);

/// Starts peak_allocated of `device` again from what is allocated now (no-op on the CPU).
SDXLHOST_API void reset_peak_device_memory(const c10::Device& device);

/// Waits until the work queued on `device` has finished (no-op on the CPU, where operations
/// run when called). For timings and before reading results on the host; the denoise loop
/// itself never waits.
SDXLHOST_API void synchronize(const c10::Device& device);

}  // namespace sdxlhost::nn
