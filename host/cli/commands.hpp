#pragma once
/// @file commands.hpp
/// The sub-commands of `sdxl-host` (see cli.hpp for their usage).

#include <string>
#include <vector>

#include "host/cli/arguments.hpp"
#include "host/config/host_config.hpp"

namespace sdxlhost::host::cli {

/// `serve`: serves the pipe (or stdio) until shutdown; 0 on a clean stop.
int serve_command(const Arguments& args);
/// `generate`: runs one request in-process; prints progress to stderr and the response to stdout.
int generate_command(const Arguments& args);
/// `send`: sends one message to a running host; prints every line received; 0 when success.
int send_command(const Arguments& args);
/// `plugins`: loads the plugins of the config and prints what loaded, with state and reason.
int plugins_command(const Arguments& args);

/// The config named by --config (defaults when absent), with the log level applied.
HostConfig config_from_arguments(const Arguments& args, std::vector<std::string>& warnings);

}  // namespace sdxlhost::host::cli
