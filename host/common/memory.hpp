#pragma once
/// @file memory.hpp
/// Memory for tensors, and giving it back to the system.
///
/// sdxl-host is linked with tcmalloc (gperftools' tcmalloc_minimal, Debian's
/// libtcmalloc-minimal4): a freed tensor's pages stay in the process and the next step's tensor
/// of the same size reuses them. glibc's malloc returns every block above its mmap threshold
/// (at most 32 MiB, and SDXL's activations and oneDNN's weight reorders are larger) to the
/// system on free, so each step faulted in ~1 GB of fresh zeroed pages at SDXL width (250 000
/// page faults a step, serialised in the kernel: the second core gained almost nothing). Memory
/// goes back to the system when models are dropped and after each job (release_free_memory).
///
/// Without tcmalloc (another build), glibc's sliding mmap threshold would keep a freed model's
/// weights in the heap (RSS of a full SDXL checkpoint stayed at 9 GB with 0 models loaded), so
/// the threshold is then fixed at start and the heap trimmed at the same points.
/// Thread-safety: every function may be called from any thread.

#include <cstddef>

namespace sdxlhost::host {

/// Default fixed mmap threshold: glibc's own starting value (128 KiB).
inline constexpr std::size_t kMmapThresholdBytes = 128 * 1024;

/// Under glibc's malloc (not tcmalloc): fixes its mmap threshold at `threshold_bytes` (which also
/// stops it sliding) unless the environment sets MALLOC_MMAP_THRESHOLD_ (the operator's choice
/// wins). Idempotent. Returns true when this call set it; false under tcmalloc or another libc.
bool configure_allocator(std::size_t threshold_bytes = kMmapThresholdBytes);

/// Returns the allocator's free pages to the system (tcmalloc's ReleaseFreeMemory, or glibc's
/// malloc_trim(0)). Cheap when there is little to free; called after models are dropped and
/// after each job.
void release_free_memory();

/// "tcmalloc" when the process runs on tcmalloc, else "glibc".
const char* allocator_name();

/// The resident set size of this process in bytes (/proc/self/statm; 0 where unavailable).
std::size_t resident_bytes();

}  // namespace sdxlhost::host
