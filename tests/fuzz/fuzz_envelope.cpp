// libFuzzer target: one NDJSON line through the envelope parser and, by its message type, the
// request parsers (generation, upscale, preprocess), plus the log escaping of the raw line.
// Every input must end in an sdk::Error or a parsed request: no crash, no other exception.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "host/common/log_escape.hpp"
#include "host/config/host_config.hpp"
#include "host/protocol/envelope.hpp"
#include "host/protocol/preprocess_request.hpp"
#include "host/protocol/request_parser.hpp"
#include "sdxlhost/sdk/error.hpp"

using namespace sdxlhost;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view line(reinterpret_cast<const char*>(data), size);
  const std::string escaped = host::escape_for_log(line);
  for (unsigned char c : escaped)
    if (c < 0x20 || c == 0x7F) __builtin_trap();  // an escaped log line holds no control byte
  (void)host::protocol::find_request_id(line);
  host::Limits limits;
  try {
    host::protocol::Envelope envelope = host::protocol::parse_envelope(line, {limits.max_message_bytes, limits.max_json_depth});
    std::vector<std::string> warnings;
    switch (envelope.type) {
      case host::protocol::MessageType::InferenceRequest: {
        const auto request = host::protocol::parse_generation_request(envelope.data, envelope.request_id, limits,
                                                                      300.0, warnings);
        (void)host::protocol::request_to_json(request).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        break;
      }
      case host::protocol::MessageType::ImageMessage:
        (void)envelope.image_message->parse(envelope.data, envelope.request_id, limits, 300.0, warnings);
        break;
      case host::protocol::MessageType::Preprocess:
        (void)host::protocol::parse_preprocess_request(envelope.data, warnings);
        break;
      default:
        break;
    }
  } catch (const sdk::Error&) {
    // the expected outcome of a bad line
  }
  return 0;
}
