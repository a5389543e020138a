#pragma once
/// @file request_parser.hpp
/// The wire's request schema is the SDK's (sdxlhost/sdk/request_parser.hpp): the host parses an
/// inference_request's and an image message's `data` with it, under the config's `limits.*`
/// (host::Limits is an sdk::RequestLimits). These are the protocol layer's names for it.

#include "host/config/host_config.hpp"
#include "sdxlhost/sdk/request_parser.hpp"

namespace sdxlhost::host::protocol {

using sdk::normalize_legacy_fields;
using sdk::parse_generation_request;
using sdk::request_to_json;
using sdk::image_messages;
using sdk::ImageMessage;

}  // namespace sdxlhost::host::protocol
