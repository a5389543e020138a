#pragma once
/// @file client_text.hpp
/// What of an unexpected exception may go to a client: libtorch's c10::Error carries a C++
/// backtrace and source paths of the build ("Exception raised from ... at /build/...: frame #0
/// ..."); a client gets the message alone and the full text goes to the log.

#include <exception>
#include <string>

namespace sdxlhost::host {

/// The exception's message without backtrace, frames or "Exception raised from" lines.
std::string client_message(const std::exception& error);

}  // namespace sdxlhost::host
