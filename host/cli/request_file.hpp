#pragma once
/// @file request_file.hpp
/// Reading a request for `generate` and `send`: a file holding either a whole envelope
/// ({"message_type", "data", ...}) or just the `data` object of an inference_request.

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

namespace sdxlhost::host::cli {

/// The envelope in `file` (a bare data object is wrapped as an inference_request). A request_id
/// is added when absent so the answer can be matched. Throws std::invalid_argument when the file
/// cannot be read or is not a JSON object.
nlohmann::json read_request_file(const std::filesystem::path& file);

/// Adds a generated request_id when the envelope has none; returns the id.
std::string ensure_request_id(nlohmann::json& envelope);

}  // namespace sdxlhost::host::cli
