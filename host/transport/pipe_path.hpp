#pragma once
/// @file pipe_path.hpp
/// Where a pipe name lives. Linux/macOS: the Unix socket `${TMPDIR:-/tmp}/CoreFxPipe_<name>`,
/// which is what .NET's and Mono's `NamedPipeClientStream(".", "<name>")` connect to; an absolute
/// path is used as is. Windows: `\\.\pipe\<name>`.

#include <string>

namespace sdxlhost::host::transport {

/// The endpoint for `pipe_name` on this platform (see file comment).
std::string pipe_endpoint(const std::string& pipe_name);

}  // namespace sdxlhost::host::transport
