#include "host/protocol/envelope.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <optional>
#include <random>

#include "sdxlhost/sdk/request_parser.hpp"

namespace sdxlhost::host::protocol {
namespace {

using nlohmann::json;
using sdk::Error;
using sdk::ErrorCode;

const std::map<std::string, MessageType>& message_types() {
  static const std::map<std::string, MessageType> kTypes = {
      {"inference_request", MessageType::InferenceRequest},
      {"enhanced_inference_request", MessageType::InferenceRequest},
      {"cancel", MessageType::Cancel},
      {"ping", MessageType::Ping},
      {"capabilities", MessageType::Capabilities},
      {"list_models", MessageType::ListModels},
      {"load_model", MessageType::LoadModel},
      {"unload_model", MessageType::UnloadModel},
      {"status", MessageType::Status},
      {"reload_config", MessageType::ReloadConfig},
      {"shutdown", MessageType::Shutdown},
      {"preprocess", MessageType::Preprocess},
      {"metrics", MessageType::Metrics},
  };
  return kTypes;
}

/// The SDK's image message of wire spelling `name`; null when there is none.
const sdk::ImageMessage* find_image_message(const std::string& name) {
  for (const auto& message : sdk::image_messages())
    if (message.message_type == name) return &message;
  return nullptr;
}

[[noreturn]] void fail(ErrorCode code, const std::string& message, const std::string& field,
                       const std::string& request_id) {
  throw EnvelopeError(Error(code, message, field), request_id);
}

/// The request id as a string: strings as is, integers printed; anything else is refused.
std::string read_request_id(const json& message, bool& generated) {
  auto it = message.find("request_id");
  generated = false;
  if (it == message.end() || it->is_null() || (it->is_string() && it->get<std::string>().empty())) {
    generated = true;
    return generate_request_id();
  }
  if (it->is_string()) return it->get<std::string>();
  if (it->is_number_integer()) return it->dump();
  fail(ErrorCode::ValidationError, std::string("must be a string or an integer, got ") + it->type_name(), "request_id", "");
}

std::string read_type_name(const json& message, const std::string& request_id,
                           std::vector<std::string>& warnings) {
  auto type = message.find("message_type");
  auto action = message.find("action");
  if (type == message.end() && action != message.end()) type = action;
  else if (type != message.end() && action != message.end())
    warnings.push_back("both 'message_type' and legacy 'action' given; 'message_type' used");
  if (type == message.end())
    fail(ErrorCode::ValidationError, "is required (or legacy 'action')", "message_type", request_id);
  if (!type->is_string()) fail(ErrorCode::ValidationError, "must be a string", "message_type", request_id);
  return type->get<std::string>();
}

/// Finds where a JSON text holds a number too large for a double: the dotted path of the value
/// ("data.hyperparameters.seed") and the number as written. A SAX pass that stops at the error.
class OverflowLocator final : public nlohmann::json_sax<json> {
 public:
  std::string path;    ///< where the bad number is ("" at the top level)
  std::string number;  ///< its text
  bool found = false;

  bool null() override { return value(); }
  bool boolean(bool) override { return value(); }
  bool number_integer(number_integer_t) override { return value(); }
  bool number_unsigned(number_unsigned_t) override { return value(); }
  bool number_float(number_float_t, const string_t&) override { return value(); }
  bool string(string_t&) override { return value(); }
  bool binary(binary_t&) override { return value(); }
  bool start_object(std::size_t) override {
    frames_.push_back({false, 0, {}});
    return true;
  }
  bool key(string_t& name) override {
    frames_.back().key = name;
    return true;
  }
  bool end_object() override {
    frames_.pop_back();
    return value();
  }
  bool start_array(std::size_t) override {
    frames_.push_back({true, 0, {}});
    return true;
  }
  bool end_array() override {
    frames_.pop_back();
    return value();
  }
  bool parse_error(std::size_t, const std::string& token, const nlohmann::detail::exception& error) override {
    if (error.id == 406) {
      found = true;
      number = token;
      for (const auto& frame : frames_) {
        if (frame.array) path += "[" + std::to_string(frame.index) + "]";
        else path += (path.empty() ? "" : ".") + frame.key;
      }
    }
    return false;
  }

 private:
  struct Frame {
    bool array;
    std::size_t index;
    std::string key;
  };
  bool value() {
    if (!frames_.empty() && frames_.back().array) ++frames_.back().index;
    return true;
  }
  std::vector<Frame> frames_;
};

std::size_t skip_space(std::string_view text, std::size_t i) {
  while (i < text.size() && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r')) ++i;
  return i;
}

/// End of the JSON string literal that starts at text[i] == '"' (one past the closing quote),
/// or npos when it does not end.
std::size_t string_end(std::string_view text, std::size_t i) {
  for (++i; i < text.size(); ++i) {
    if (text[i] == '\\') ++i;
    else if (text[i] == '"') return i + 1;
  }
  return std::string_view::npos;
}

}  // namespace

std::optional<std::string> find_request_id(std::string_view line) {
  int depth = 0;
  for (std::size_t i = 0; i < line.size();) {
    const char c = line[i];
    if (c == '"') {
      const std::size_t end = string_end(line, i);
      if (end == std::string_view::npos) return std::nullopt;
      const std::string_view literal = line.substr(i, end - i);
      std::size_t next = skip_space(line, end);
      if (depth == 1 && next < line.size() && line[next] == ':' && literal == "\"request_id\"") {
        next = skip_space(line, next + 1);
        if (next >= line.size()) return std::nullopt;
        std::size_t value_end = next;
        if (line[next] == '"') {
          value_end = string_end(line, next);
          if (value_end == std::string_view::npos) return std::nullopt;
        } else {
          while (value_end < line.size() && std::string_view("+-0123456789.eE").find(line[value_end]) != std::string_view::npos)
            ++value_end;
        }
        const json value = json::parse(line.substr(next, value_end - next), nullptr, /*allow_exceptions=*/false);
        if (value.is_string() && !value.get<std::string>().empty()) return value.get<std::string>();
        if (value.is_number_integer()) return value.dump();
        return std::nullopt;
      }
      i = end;
      continue;
    }
    if (c == '{' || c == '[') ++depth;
    else if (c == '}' || c == ']') --depth;
    ++i;
  }
  return std::nullopt;
}

const char* to_string(MessageType type) {
  switch (type) {
    case MessageType::InferenceRequest: return "inference_request";
    case MessageType::Cancel: return "cancel";
    case MessageType::Ping: return "ping";
    case MessageType::Capabilities: return "capabilities";
    case MessageType::ListModels: return "list_models";
    case MessageType::LoadModel: return "load_model";
    case MessageType::UnloadModel: return "unload_model";
    case MessageType::Status: return "status";
    case MessageType::ReloadConfig: return "reload_config";
    case MessageType::Shutdown: return "shutdown";
    case MessageType::Preprocess: return "preprocess";
    case MessageType::ImageMessage: return "image_message";
    case MessageType::Metrics: return "metrics";
  }
  return "unknown";
}

std::vector<std::string> message_type_names() {
  std::vector<std::string> names;
  for (const auto& [name, type] : message_types()) names.push_back(name);
  for (const auto& message : sdk::image_messages()) names.push_back(message.message_type);
  std::sort(names.begin(), names.end());
  return names;
}

int json_nesting_depth(std::string_view text, int limit) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '{' || c == '[') {
      deepest = std::max(deepest, ++depth);
      if (deepest > limit) return deepest;
    } else if (c == '}' || c == ']') --depth;
  }
  return deepest;
}

Envelope parse_envelope(std::string_view line, const EnvelopeLimits& limits) {
  if (line.size() > limits.max_message_bytes)
    fail(ErrorCode::MessageTooLarge,
         "message of " + std::to_string(line.size()) + " bytes exceeds limits.max_message_bytes (" +
             std::to_string(limits.max_message_bytes) + ")",
         "", "");
  if (json_nesting_depth(line, limits.max_json_depth) > limits.max_json_depth)
    fail(ErrorCode::MalformedJson,
         "JSON nested deeper than limits.max_json_depth (" + std::to_string(limits.max_json_depth) + ")",
         "", "");
  json message;
  try {
    message = json::parse(line.begin(), line.end());
  } catch (const json::out_of_range& e) {
    // A number no double can hold (1e400): name where it is, and answer with the request id when
    // it can be read from the line.
    OverflowLocator locator;
    json::sax_parse(line.begin(), line.end(), &locator);
    const std::string id = find_request_id(line).value_or("");
    fail(ErrorCode::MalformedJson,
         "number " + (locator.found ? "'" + locator.number + "' " : std::string()) +
             "is out of range (larger than a 64-bit float can hold)",
         locator.found ? locator.path : "", id);
  } catch (const json::exception& e) {
    fail(ErrorCode::MalformedJson, std::string("not valid UTF-8 JSON: ") + e.what(), "", "");
  }
  if (!message.is_object()) fail(ErrorCode::MalformedJson, "a message must be a JSON object", "", "");

  Envelope envelope;
  envelope.request_id = read_request_id(message, envelope.request_id_generated);
  std::string type_name = read_type_name(message, envelope.request_id, envelope.warnings);
  if (auto known = message_types().find(type_name); known != message_types().end()) {
    envelope.type = known->second;
    envelope.type_name = to_string(known->second);
  } else if (const sdk::ImageMessage* image_message = find_image_message(type_name)) {
    envelope.type = MessageType::ImageMessage;
    envelope.type_name = image_message->message_type;
    envelope.image_message = image_message;
  } else {
    fail(ErrorCode::UnknownMessageType, "unknown message type '" + type_name + "'", "message_type",
         envelope.request_id);
  }

  if (auto data = message.find("data"); data != message.end() && !data->is_null()) {
    if (!data->is_object()) fail(ErrorCode::ValidationError, "must be an object", "data", envelope.request_id);
    envelope.data = std::move(*data);
  }
  for (const auto& [key, value] : message.items())
    if (key != "message_type" && key != "action" && key != "request_id" && key != "data")
      envelope.warnings.push_back("unknown field '" + key + "' ignored");
  return envelope;
}

std::string generate_request_id() {
  static std::atomic<unsigned long long> counter{0};
  static const unsigned long long salt = std::random_device{}() ^
      static_cast<unsigned long long>(std::chrono::steady_clock::now().time_since_epoch().count());
  char buffer[40];
  std::snprintf(buffer, sizeof buffer, "host-%08llx-%llu", salt & 0xffffffffULL, ++counter);
  return buffer;
}

json success_response(const std::string& request_id, json data, const std::vector<std::string>& warnings) {
  return {{"message_type", "response"}, {"request_id", request_id}, {"success", true},
          {"data", std::move(data)},   {"warnings", warnings}};
}

json error_response(const std::string& request_id, const sdk::Error& error,
                    const std::vector<std::string>& warnings) {
  json response = {{"message_type", "response"},
                   {"request_id", request_id.empty() ? json(nullptr) : json(request_id)},
                   {"success", false},
                   {"error", error.what()},
                   {"error_code", sdk::to_string(error.code())},
                   {"warnings", warnings}};
  response["field"] = error.field().empty() ? json(nullptr) : json(error.field());
  return response;
}

json progress_event(const std::string& request_id, const std::string& stage, int step,
                    int total_steps, double elapsed_s, const json& detail) {
  json event = {{"message_type", "progress"},
                {"request_id", request_id},
                {"data", {{"stage", stage}, {"step", step}, {"total_steps", total_steps},
                          {"elapsed_s", elapsed_s}}}};
  if (!detail.is_null()) event["data"]["detail"] = detail;
  return event;
}

std::string to_line(const json& message) {
  return message.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace sdxlhost::host::protocol
