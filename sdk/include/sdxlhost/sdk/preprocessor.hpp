#pragma once
/// @file preprocessor.hpp
/// A control-image preprocessor (canny, ...): image in, image out, options from the request.
/// Thread-safety: `run` is called concurrently by different jobs; keep no per-call state.

#include <string>

#include <nlohmann/json.hpp>

#include "sdxlhost/sdk/image.hpp"

namespace sdxlhost::sdk {

/// One preprocessor, registered under name() and looked up by the request's preprocessor name.
class Preprocessor {
 public:
  virtual ~Preprocessor() = default;
  /// Name a request uses ("canny").
  virtual std::string name() const = 0;
  /// Transforms `input`. `options` is the request's preprocessor options object (may be empty);
  /// throws Error(ValidationError) naming the option at fault.
  virtual Image run(const Image& input, const nlohmann::json& options) const = 0;
};

}  // namespace sdxlhost::sdk
