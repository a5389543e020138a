#pragma once
/// @file device_check.hpp
/// The configured `device` checked against this build and machine at start, so a CPU-only build
/// told to use "cuda" says so once, clearly, instead of failing every request.

#include <string>

namespace sdxlhost::host::runtime {

/// Throws sdk::Error(ValidationError, "device") when `device` ("cpu", "cuda", "cuda:N") cannot be
/// used: CUDA asked of a build whose libtorch has no CUDA (or a machine without a visible GPU),
/// or an index past the visible devices.
void check_device(const std::string& device);

}  // namespace sdxlhost::host::runtime
