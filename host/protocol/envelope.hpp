#pragma once
/// @file envelope.hpp
/// The wire envelope: one UTF-8 JSON object per line.
///   in:  {"message_type" (or legacy "action"), "request_id", "data": {...}}
///   out: {"message_type":"response","request_id","success","data"|"error","error_code",
///         "field","warnings"} and {"message_type":"progress","request_id","data":{...}}
/// Parsing checks size, nesting depth and UTF-8 before anything else reads the line.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::sdk {
struct ImageMessage;  // sdxlhost/sdk/request_parser.hpp
}

namespace sdxlhost::host::protocol {

/// The messages the host understands.
enum class MessageType {
  InferenceRequest,  ///< "inference_request" (alias "enhanced_inference_request")
  Cancel,
  Ping,
  Capabilities,
  ListModels,
  LoadModel,
  UnloadModel,
  Status,
  ReloadConfig,
  Shutdown,
  Preprocess,  ///< run a control-image preprocessor, answer the image (a preview)
  /// An image the client sends, for the stages of one feature (sdk::image_messages(): the SDK
  /// declares which, the host names none).
  ImageMessage,
  Metrics,  ///< "metrics": the Prometheus text of /metrics, over the pipe
};

/// Wire spelling of a message type ("inference_request"); "image_message" for every
/// ImageMessage (Envelope::type_name has the message's own).
const char* to_string(MessageType type);

/// Every accepted wire spelling, aliases included, sorted.
std::vector<std::string> message_type_names();

/// A parsed incoming message.
struct Envelope {
  MessageType type = MessageType::Ping;  ///< from `message_type` (or legacy `action`)
  std::string type_name = "ping";  ///< its canonical wire spelling (aliases resolved)
  /// The SDK's description of an ImageMessage; null for every other type.
  const sdk::ImageMessage* image_message = nullptr;
  std::string request_id;       ///< as sent, or generated when absent
  bool request_id_generated = false;
  nlohmann::json data = nlohmann::json::object();  ///< the `data` object ({} when absent)
  std::vector<std::string> warnings;               ///< unknown envelope fields, legacy spellings
};

/// Limits the envelope parser enforces.
struct EnvelopeLimits {
  std::size_t max_message_bytes = 64u * 1024u * 1024u;  ///< `limits.max_message_bytes`
  int max_json_depth = 64;                              ///< `limits.max_json_depth`
};

/// Thrown by parse_envelope: the error plus the request id when one could be read.
class EnvelopeError : public sdk::Error {
 public:
  EnvelopeError(const sdk::Error& error, std::string request_id)
      : sdk::Error(error), request_id_(std::move(request_id)) {}
  /// The request id of the message, or empty when it could not be read.
  const std::string& request_id() const { return request_id_; }

 private:
  std::string request_id_;
};

/// Parses one line (without its newline). Throws EnvelopeError with MESSAGE_TOO_LARGE,
/// MALFORMED_JSON (not JSON, invalid UTF-8, too deep, not an object, bad envelope field types, a
/// number out of a double's range: then `field` is where it is and the request id is read from
/// the line when it can be) or UNKNOWN_MESSAGE_TYPE.
Envelope parse_envelope(std::string_view line, const EnvelopeLimits& limits);

/// The top-level `request_id` of a line that may not parse as a whole (a string, or an integer
/// printed), found by a structural scan; nullopt when there is none or it cannot be read.
std::optional<std::string> find_request_id(std::string_view line);

/// Deepest nesting of arrays/objects in `text`, stopping early once it exceeds `limit`
/// (strings and escapes are skipped). Cheap pre-check before the real parse.
int json_nesting_depth(std::string_view text, int limit);

/// A new request id ("host-<random hex>").
std::string generate_request_id();

/// {"message_type":"response","request_id","success":true,"data","warnings"}.
nlohmann::json success_response(const std::string& request_id, nlohmann::json data,
                                const std::vector<std::string>& warnings = {});

/// {"message_type":"response","request_id","success":false,"error","error_code","field",
/// "warnings"}; `request_id` empty -> null.
nlohmann::json error_response(const std::string& request_id, const sdk::Error& error,
                              const std::vector<std::string>& warnings = {});

/// {"message_type":"progress","request_id","data":{"stage","step","total_steps","elapsed_s"}},
/// plus "detail": {"part","index","count"} when `detail` is not null (progress inside a step).
nlohmann::json progress_event(const std::string& request_id, const std::string& stage, int step,
                              int total_steps, double elapsed_s, const nlohmann::json& detail = nullptr);

/// Serialises a message as one line (no newline); invalid UTF-8 in strings is replaced.
std::string to_line(const nlohmann::json& message);

}  // namespace sdxlhost::host::protocol
