#pragma once
/// @file logging.hpp
/// One spdlog logger per host component ("transport", "protocol", "runtime", ...), all writing
/// to stderr (stdout belongs to `--stdio` mode), all at the level from the config.
/// Thread-safety: every function may be called from any thread.

#include <memory>
#include <string>

#include <spdlog/logger.h>

namespace sdxlhost::host {

/// The logger of `component`, created on first use at the current level. Every record it logs
/// is escaped first (escape_for_log): control characters and invalid UTF-8 never reach a sink.
std::shared_ptr<spdlog::logger> component_logger(const std::string& component);

/// Sets the level of every component logger, existing and future ("trace" .. "off").
void set_log_level(const std::string& level);

}  // namespace sdxlhost::host
