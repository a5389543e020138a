#pragma once
/// @file error_capture.hpp
/// Runs code that should throw sdk::Error and hands back what it threw, for EXPECT_EQ checks.

#include <functional>
#include <string>

#include <gtest/gtest.h>

#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::test_support {

/// The code of the sdk::Error that `f` throws; its message and field go to `message` / `field`
/// when given. Fails the test (and returns InternalError) when `f` throws nothing.
inline sdk::ErrorCode code_of(const std::function<void()>& f, std::string* message = nullptr,
                              std::string* field = nullptr) {
  try {
    f();
  } catch (const sdk::Error& e) {
    if (message) *message = e.message();
    if (field) *field = e.field();
    return e.code();
  }
  ADD_FAILURE() << "no sdk::Error thrown";
  return sdk::ErrorCode::InternalError;
}

}  // namespace sdxlhost::test_support
