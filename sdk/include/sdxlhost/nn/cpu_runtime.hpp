#pragma once
/// @file cpu_runtime.hpp
/// The CPU the process runs on and the kernels and threads it uses.
///
/// Debian's OpenBLAS 0.3.21 does not recognise recent Xeons (AVX-512 with BF16/FP16/AMX) and
/// falls back to its generic SSE3 "Prescott" kernels, about half the speed of its SkylakeX ones.
/// OpenBLAS picks its core once, in its library constructor, from `OPENBLAS_CORETYPE`; so the
/// only way to change it is to set that variable and start the program again.
/// `select_blas_kernels` does that, once, as the first thing in `main`. An operator's own
/// `OPENBLAS_CORETYPE` always wins; `SDXLHOST_BLAS_CORE` is `auto` (default: a better core only
/// when the library fell back to a generic one), `library` (keep its choice) or a core type
/// name (`SKYLAKEX`, `HASWELL`, ...) to select through the same re-execution.
///
/// OpenBLAS's threads: Debian ships OpenBLAS built with its own pthreads pool (the default
/// alternative) and built on OpenMP (`libopenblas0-openmp`). With the pthreads build two pools
/// take turns on the cores (OpenBLAS's for GEMMs, libgomp's for libtorch and oneDNN), each
/// spinning while the other works. When the OpenMP build is installed beside the loaded one, the
/// same re-execution puts it first on `LD_LIBRARY_PATH`, so every kernel runs on one pool
/// (`SDXLHOST_BLAS_THREADING=library` keeps the library that loaded).

#include <string>

#include "sdxlhost/sdk/export.hpp"

namespace sdxlhost::nn {

/// What the CPU offers (from cpuid / /proc/cpuinfo).
struct CpuInfo {
  std::string model;       ///< "Intel(R) Xeon(R) ..." (from /proc/cpuinfo; "" when unknown)
  bool avx2 = false;
  bool avx512f = false;
  bool avx512_bf16 = false;
  bool amx_bf16 = false;
  int logical_cpus = 1;    ///< CPUs this process may run on
  int physical_cores = 1;  ///< distinct cores among them (hyper-threads counted once)
};

/// Reads the CPU's model, vector extensions and core counts.
SDXLHOST_API CpuInfo cpu_info();

/// The core OpenBLAS runs ("SkylakeX", "Prescott", ...), or "" when the BLAS is not OpenBLAS.
SDXLHOST_API std::string blas_core();

/// The OpenBLAS core type that fits `cpu` ("SKYLAKEX" on AVX-512, "HASWELL" on AVX2), or ""
/// when `running` (blas_core()) is already as good or nothing better is known.
SDXLHOST_API std::string better_blas_core(const CpuInfo& cpu, const std::string& running);

/// How the BLAS core came to be, for logs, `capabilities` and `status`.
struct BlasChoice {
  std::string core;      ///< blas_core() now
  std::string selected;  ///< "operator" (OPENBLAS_CORETYPE given), "auto" (we re-executed with
                         ///< a better core), "setting" (re-executed with SDXLHOST_BLAS_CORE's
                         ///< core), "library" (its own detection was kept)
  std::string detail;    ///< one line: what was chosen and why
  std::string openmp;    ///< OpenMP's wait policy in force ("GOMP_SPINCOUNT=0 (set at start)", ...)
  std::string threading;  ///< OpenBLAS's threads: "openmp" (libtorch's pool), "pthreads" (its
                          ///< own pool), "sequential", or "" when the BLAS is not OpenBLAS
  std::string threading_detail;  ///< one line: which OpenBLAS build and why
};

/// OpenBLAS's threading in this process ("openmp", "pthreads", "sequential"; "" when the BLAS
/// is not OpenBLAS).
SDXLHOST_API std::string blas_threading();

/// Call first in main(): when OpenBLAS chose a generic core on a CPU that has a better one (or
/// SDXLHOST_BLAS_CORE names another core) and OPENBLAS_CORETYPE is not set, sets it; when the
/// loaded OpenBLAS runs its own pthreads and its OpenMP build is installed beside it, puts that
/// build first on LD_LIBRARY_PATH; when OpenBLAS keeps its own pool and neither
/// OMP_WAIT_POLICY nor GOMP_SPINCOUNT is set, sets GOMP_SPINCOUNT=0 (libgomp's spinning workers
/// otherwise take the cores OpenBLAS's threads need); then re-executes /proc/self/exe with the
/// same arguments, once (a marker variable prevents a loop). All are read by the loader or the
/// libraries only when they load, hence the re-execution.
/// Returns only when no re-exec happened (or it failed).
SDXLHOST_API void select_blas_kernels(char** argv);

/// The choice in force in this process (after select_blas_kernels, or the library's own).
SDXLHOST_API BlasChoice blas_choice();

/// One thread count for every pool: libtorch's intra-op pool (and with it OpenMP / oneDNN) and
/// OpenBLAS's own threads, so the pools do not compete. `threads` <= 0 means the physical cores.
/// Returns the count in force.
SDXLHOST_API int apply_threads(int threads);

}  // namespace sdxlhost::nn
