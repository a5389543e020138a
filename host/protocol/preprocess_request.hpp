#pragma once
/// @file preprocess_request.hpp
/// `data` of a `preprocess` message -> what to run: {"preprocessor": "canny" | {"name": "canny",
/// ...options}, "image": base64 PNG/JPEG}. The preprocessor's own options are checked by the
/// preprocessor (sdk::Preprocessor::resolve_options) when the job runs; everything else here,
/// each error an sdk::Error(ValidationError) naming its field.

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace sdxlhost::host::protocol {

/// A parsed preprocess request.
struct PreprocessRequest {
  std::string name;                                   ///< registered preprocessor name
  std::string name_field;                             ///< "data.preprocessor" or "data.preprocessor.name"
  nlohmann::json options = nlohmann::json::object();  ///< the preprocessor object as sent (holds "name")
  std::string image;                                  ///< base64 PNG/JPEG (a data: URL prefix allowed)
};

/// Parses and validates `data`; unknown top-level fields go to `warnings`.
PreprocessRequest parse_preprocess_request(const nlohmann::json& data, std::vector<std::string>& warnings);

}  // namespace sdxlhost::host::protocol
