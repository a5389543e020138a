#include "sdxlhost/sdk/error.hpp"

#include <utility>

namespace sdxlhost::sdk {
namespace {

struct CodeName {
  ErrorCode code;
  const char* name;
};

constexpr CodeName kNames[] = {
    {ErrorCode::ValidationError, "VALIDATION_ERROR"},
    {ErrorCode::MalformedJson, "MALFORMED_JSON"},
    {ErrorCode::UnknownMessageType, "UNKNOWN_MESSAGE_TYPE"},
    {ErrorCode::MessageTooLarge, "MESSAGE_TOO_LARGE"},
    {ErrorCode::FeatureDisabled, "FEATURE_DISABLED"},
    {ErrorCode::ModelNotFound, "MODEL_NOT_FOUND"},
    {ErrorCode::ModelLoadError, "MODEL_LOAD_ERROR"},
    {ErrorCode::QueueFull, "QUEUE_FULL"},
    {ErrorCode::Timeout, "TIMEOUT"},
    {ErrorCode::Cancelled, "CANCELLED"},
    {ErrorCode::NotFound, "NOT_FOUND"},
    {ErrorCode::PluginError, "PLUGIN_ERROR"},
    {ErrorCode::OutputError, "OUTPUT_ERROR"},
    {ErrorCode::ShuttingDown, "SHUTTING_DOWN"},
    {ErrorCode::InternalError, "INTERNAL_ERROR"},
};

std::string with_field(const std::string& message, const std::string& field) {
  return field.empty() ? message : field + ": " + message;
}

}  // namespace

const char* to_string(ErrorCode code) noexcept {
  for (const auto& entry : kNames)
    if (entry.code == code) return entry.name;
  return "INTERNAL_ERROR";
}

bool error_code_from_string(std::string_view text, ErrorCode& out) noexcept {
  for (const auto& entry : kNames) {
    if (text == entry.name) {
      out = entry.code;
      return true;
    }
  }
  return false;
}

Error::Error(ErrorCode code, std::string message, std::string field)
    : std::runtime_error(with_field(message, field)),
      code_(code),
      field_(std::move(field)),
      message_(std::move(message)) {}

}  // namespace sdxlhost::sdk
