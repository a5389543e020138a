#pragma once
/// @file upscaler_test_util.hpp
/// What the upscaler tests share beyond common/goldens.hpp: the golden folder and error capture.

#include <ATen/core/Tensor.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>

#include "common/goldens.hpp"
#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::test_support {

/// ../shared/goldens/upscaler.
inline std::filesystem::path golden_dir() { return golden("upscaler"); }

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

}  // namespace sdxlhost::test_support
