#pragma once
/// @file memory.hpp
/// Giving memory back to the system. glibc's malloc raises its mmap threshold each time a large
/// mmapped block is freed (up to 32 MiB), so after a model is unloaded the next model's weights
/// come from the heap, and freeing them leaves the pages in the process (RSS of a full SDXL
/// checkpoint stayed at 9 GB with 0 models loaded). The host fixes the threshold at start, so
/// every large block is its own mapping returned by free(), and trims the heap after models are
/// dropped and after each job. Thread-safety: both functions may be called from any thread.

#include <cstddef>

namespace sdxlhost::host {

/// Default fixed mmap threshold: glibc's own starting value (128 KiB).
inline constexpr std::size_t kMmapThresholdBytes = 128 * 1024;

/// Fixes malloc's mmap threshold at `threshold_bytes` (which also stops it sliding) unless the
/// environment sets MALLOC_MMAP_THRESHOLD_ (the operator's choice wins). Idempotent. Returns
/// true when this call set it. No-op (false) where the C library is not glibc.
bool configure_allocator(std::size_t threshold_bytes = kMmapThresholdBytes);

/// Returns free heap pages of every malloc arena to the system (glibc malloc_trim(0)). Cheap
/// when there is little to free; called after models are dropped and after each job.
void release_free_memory();

/// The resident set size of this process in bytes (/proc/self/statm; 0 where unavailable).
std::size_t resident_bytes();

}  // namespace sdxlhost::host
