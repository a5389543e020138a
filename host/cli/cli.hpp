#pragma once
/// @file cli.hpp
/// The `sdxl-host` command line:
///   sdxl-host serve    --config FILE [--stdio]          serve the pipe (or stdin/stdout)
///   sdxl-host generate --config FILE REQUEST.json       one request through the same code path
///   sdxl-host generate --config FILE --prompt TEXT [--steps N] [--width W] [--height H]
///                      [--seed S] [--save-path P] [--format F]
///   sdxl-host send     --pipe NAME (REQUEST.json | --message TYPE [--data JSON]) [--timeout S]
///   sdxl-host plugins  --config FILE                    what would load, with state and reason
/// Exit code 0 on success, 1 when the request failed, 2 on bad usage.

namespace sdxlhost::host::cli {

/// Runs the command line; returns the process exit code.
int run(int argc, char** argv);

}  // namespace sdxlhost::host::cli
