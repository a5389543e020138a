#include "host/common/logging.hpp"

#include <mutex>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "host/common/log_escape.hpp"

namespace sdxlhost::host {
namespace {

/// A logger whose records are escaped (host/common/log_escape.hpp) before any sink sees them:
/// text from clients (request ids, names, paths, parser messages quoting the line) can neither
/// forge a log line nor put invalid UTF-8 into the log.
class EscapingLogger final : public spdlog::logger {
 public:
  using spdlog::logger::logger;

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    const std::string_view payload(msg.payload.data(), msg.payload.size());
    if (!needs_log_escape(payload)) return spdlog::logger::sink_it_(msg);
    const std::string escaped = escape_for_log(payload);
    spdlog::details::log_msg copy = msg;
    copy.payload = spdlog::string_view_t(escaped.data(), escaped.size());
    spdlog::logger::sink_it_(copy);
  }
};

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
  std::shared_ptr<spdlog::logger> logger = std::make_shared<EscapingLogger>(component, shared_sink());
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
