#pragma once
/// @file model_test_util.hpp
/// What the single-model tests (UNet, VAE, ControlNet) share: the golden helpers, the SDK names
/// they use unqualified and the tolerance for one model forward.

#include <gtest/gtest.h>

#include <string>

#include "common/goldens.hpp"
#include "sdxlhost/nn/tensor_map.hpp"
#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::test_support {

using sdxlhost::nn::TensorMap;
using sdxlhost::sdk::Error;
using sdxlhost::sdk::ErrorCode;

/// goldens/features-README.md: single model forwards (UNet, VAE encode/decode, ControlNet
/// residuals) atol 1e-4 (float32 vs float64 noise ~1e-6).
inline constexpr double kAtol = 1e-4;

/// The field of the sdk::Error that `call` throws, or "(no error)" when it returns; an error
/// whose code is not ValidationError fails the test.
template <typename Call>
std::string validation_field(Call&& call) {
  try {
    call();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::ValidationError);
    return e.field();
  }
  return "(no error)";
}

}  // namespace sdxlhost::test_support
