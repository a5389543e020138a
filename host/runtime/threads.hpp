#pragma once
/// @file threads.hpp
/// The process's compute threads, set once at start from the config's `threads`: libtorch's
/// intra-op pool (with it OpenMP and oneDNN) and OpenBLAS's own pool get the same count, so they
/// do not compete (libtorch starts with 1 on these machines; see BUILD-NOTES.md).

#include <nlohmann/json.hpp>

namespace sdxlhost::host::runtime {

/// Sets every pool to `threads`, or to the physical core count when 0.
/// Returns the number in force afterwards.
int apply_thread_count(int threads);

/// {"model", "features", "logical_cpus", "physical_cores", "threads", "blas_core",
///  "blas_core_selected", "blas_detail", "openmp_wait"}: what capabilities and status report.
nlohmann::json cpu_report();

}  // namespace sdxlhost::host::runtime
