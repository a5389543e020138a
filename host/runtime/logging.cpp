#include "host/runtime/logging.hpp"

#include <mutex>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace sdxlhost::host {
namespace {

std::mutex& registry_mutex() {
  static std::mutex mutex;
  return mutex;
}

spdlog::level::level_enum& current_level() {
  static spdlog::level::level_enum level = spdlog::level::info;
  return level;
}

std::shared_ptr<spdlog::sinks::sink> shared_sink() {
  static auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  return sink;
}

}  // namespace

std::shared_ptr<spdlog::logger> component_logger(const std::string& component) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  if (auto existing = spdlog::get(component)) return existing;
  auto logger = std::make_shared<spdlog::logger>(component, shared_sink());
  logger->set_level(current_level());
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ [%n] %v");
  spdlog::register_logger(logger);
  return logger;
}

void set_log_level(const std::string& level) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  current_level() = spdlog::level::from_str(level);
  spdlog::set_level(current_level());
}

}  // namespace sdxlhost::host
