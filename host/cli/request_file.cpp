#include "host/cli/request_file.hpp"

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "host/protocol/envelope.hpp"

namespace sdxlhost::host::cli {

nlohmann::json read_request_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::invalid_argument("cannot read " + file.string());
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json document = nlohmann::json::parse(text.str(), nullptr, false);
  if (document.is_discarded() || !document.is_object())
    throw std::invalid_argument(file.string() + " is not a JSON object");
  if (!document.contains("message_type") && !document.contains("action"))
    document = {{"message_type", "inference_request"}, {"data", document}};
  ensure_request_id(document);
  return document;
}

std::string ensure_request_id(nlohmann::json& envelope) {
  auto it = envelope.find("request_id");
  if (it == envelope.end() || !it->is_string() || it->get<std::string>().empty())
    envelope["request_id"] = protocol::generate_request_id();
  return envelope["request_id"].get<std::string>();
}

}  // namespace sdxlhost::host::cli
