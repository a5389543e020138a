#include "host/protocol/preprocess_request.hpp"

#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/field_reader.hpp"

namespace sdxlhost::host::protocol {
namespace {

using nlohmann::json;
using sdk::Error;
using sdk::ErrorCode;

[[noreturn]] void invalid(const std::string& field, const std::string& why) {
  throw Error(ErrorCode::ValidationError, why, field);
}

}  // namespace

PreprocessRequest parse_preprocess_request(const json& data, std::vector<std::string>& warnings) {
  if (!data.is_object()) invalid("data", "must be an object");
  sdk::FieldReader reader(data, "data");
  PreprocessRequest request;
  const json* preprocessor = reader.find("preprocessor");
  if (!preprocessor) invalid("data.preprocessor", "is required: a preprocessor name or {\"name\": ..., options}");
  request.name_field = "data.preprocessor";
  if (preprocessor->is_string()) {
    request.name = preprocessor->get<std::string>();
  } else if (preprocessor->is_object()) {
    const char* key = preprocessor->contains("name") ? "name" : "type";  // "type": the C# client's spelling
    request.name_field = std::string("data.preprocessor.") + key;
    const auto name = preprocessor->find(key);
    if (name == preprocessor->end() || !name->is_string())
      invalid("data.preprocessor.name", "is required: the preprocessor's name (a string)");
    request.name = name->get<std::string>();
    request.options = *preprocessor;
  } else {
    invalid("data.preprocessor", "must be a preprocessor name or {\"name\": ..., options}");
  }
  if (request.name.empty()) invalid(request.name_field, "must not be empty");
  reader.read_string("image", request.image, /*required=*/true);
  if (request.image.empty()) invalid("data.image", "must not be empty: a base64 PNG or JPEG");
  reader.warn_unknown(warnings);
  return request;
}

}  // namespace sdxlhost::host::protocol
