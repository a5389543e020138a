#pragma once
/// @file error.hpp
/// The one error type of the project. Every failure that reaches a client is an `Error` with a
/// stable code (the wire's `error_code`) and, where a field of the request is at fault, the
/// field's path (`data.dimensions.width`). No other exception crosses the plugin boundary.

#include <stdexcept>
#include <string>
#include <string_view>

#include "sdxlhost/sdk/export.hpp"

namespace sdxlhost::sdk {

/// Stable error codes; `to_string` gives the wire spelling (e.g. "VALIDATION_ERROR").
enum class ErrorCode {
  ValidationError,     ///< a request field is missing, of the wrong type or out of range
  MalformedJson,       ///< the line is not valid UTF-8 JSON, or not an object
  UnknownMessageType,  ///< `message_type` names no known message
  MessageTooLarge,     ///< the line exceeds `limits.max_message_bytes`
  FeatureDisabled,     ///< the request needs a plugin that is disabled or missing
  ModelNotFound,       ///< a model name resolves to no file under models_root
  ModelLoadError,      ///< a model file exists but cannot be read (corrupt, wrong layout)
  QueueFull,           ///< `queue.max_pending` jobs are already waiting
  Timeout,             ///< `metadata.timeout` elapsed (queue wait + run)
  Cancelled,           ///< the job was cancelled by `cancel` or by the client going away
  NotFound,            ///< a referenced request id / plugin / slot does not exist
  PluginError,         ///< a plugin failed to load or failed inside a stage
  OutputError,         ///< encoding or saving the image failed (path escape, exists, disk)
  ShuttingDown,        ///< the host is stopping and takes no new work
  InternalError,       ///< a bug: anything not covered above
};

/// Wire spelling of a code, e.g. ErrorCode::QueueFull -> "QUEUE_FULL".
SDXLHOST_API const char* to_string(ErrorCode code) noexcept;

/// Parses a wire spelling back; returns false when `text` names no code.
SDXLHOST_API bool error_code_from_string(std::string_view text, ErrorCode& out) noexcept;

/// An error with a stable code and an optional field path. `what()` is the human message,
/// already prefixed with the field when one is set ("data.dimensions.width: must be ...").
class SDXLHOST_API Error : public std::runtime_error {
 public:
  /// @param code    stable code for clients
  /// @param message what went wrong, for a person
  /// @param field   request field at fault, dotted path from the envelope ("data.seed"), or empty
  Error(ErrorCode code, std::string message, std::string field = {});

  /// The stable code (wire `error_code`).
  ErrorCode code() const noexcept { return code_; }
  /// Dotted path of the request field at fault; empty when no field is.
  const std::string& field() const noexcept { return field_; }
  /// The message without the field prefix.
  const std::string& message() const noexcept { return message_; }

 private:
  ErrorCode code_;
  std::string field_;
  std::string message_;
};

}  // namespace sdxlhost::sdk
