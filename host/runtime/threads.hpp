#pragma once
/// @file threads.hpp
/// libtorch's intra-op thread count, set once at start from the config's `threads`
/// (libtorch starts with 1 on these machines; see BUILD-NOTES.md).

namespace sdxlhost::host::runtime {

/// Sets libtorch's intra-op threads to `threads`, or to hardware_concurrency when 0.
/// Returns the number in force afterwards.
int apply_thread_count(int threads);

}  // namespace sdxlhost::host::runtime
