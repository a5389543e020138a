#pragma once
/// @file upscaler_test_util.hpp
/// What the upscaler tests share: the golden folder, reading files, and error capture.

#include <ATen/core/Tensor.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>

#include "sdxlhost/sdk/error.hpp"

namespace upscaler_test {

/// ../shared/goldens/upscaler (SDXLHOST_SHARED_DIR from the environment or the build).
inline std::filesystem::path golden_dir() {
  const char* env = std::getenv("SDXLHOST_SHARED_DIR");
  return std::filesystem::path(env && *env ? env : SDXLHOST_SHARED_DIR) / "goldens" / "upscaler";
}

/// The bytes of a file.
inline std::string read_bytes(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

/// Writes bytes to a file.
inline void write_bytes(const std::filesystem::path& file, const std::string& bytes) {
  std::ofstream(file, std::ios::binary) << bytes;
}

/// The sdk::Error `fn` throws; a test failure (and a default error) when it throws none.
inline sdxlhost::sdk::Error error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const sdxlhost::sdk::Error& error) {
    return error;
  }
  ADD_FAILURE() << "expected an sdk::Error";
  return sdxlhost::sdk::Error(sdxlhost::sdk::ErrorCode::InternalError, "no error thrown");
}

}  // namespace upscaler_test
