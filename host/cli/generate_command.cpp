// `sdxl-host generate`: one request through the host's dispatcher, exactly as if a client had
// sent it, answered to an in-process JobSink (no wire line is written or parsed back).
#include <condition_variable>
#include <iomanip>
#include <iostream>
#include <mutex>

#include "host/cli/commands.hpp"
#include "host/cli/request_file.hpp"
#include "host/protocol/envelope.hpp"
#include "host/runtime/host_service.hpp"
#include "host/runtime/device_check.hpp"
#include "host/runtime/threads.hpp"

namespace sdxlhost::host::cli {
namespace {

/// Prints progress to stderr and keeps the final answer as the response object the wire would
/// carry (what the command prints).
class CollectingSink : public runtime::JobSink {
 public:
  void progress(const runtime::ProgressEvent& event) override {
    std::lock_guard<std::mutex> lock(mutex_);
    std::cerr << "progress " << event.stage << " " << event.step << "/" << event.total_steps << "\n";
  }
  void result(const std::string& request_id, nlohmann::json data, const std::vector<std::string>& warnings) override {
    finish(protocol::success_response(request_id, std::move(data), warnings));
  }
  void error(const std::string& request_id, const sdk::Error& error, const std::vector<std::string>& warnings) override {
    finish(protocol::error_response(request_id, error, warnings));
  }

  /// Blocks until the answer arrived.
  nlohmann::json wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    answered_.wait(lock, [this] { return done_; });
    return response_;
  }

 private:
  void finish(nlohmann::json response) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (done_) return;  // one answer per request
    response_ = std::move(response);
    done_ = true;
    answered_.notify_all();
  }

  std::mutex mutex_;
  std::condition_variable answered_;
  nlohmann::json response_;
  bool done_ = false;
};

/// The request from --prompt and friends.
nlohmann::json request_from_options(const Arguments& args) {
  nlohmann::json data = {{"prompt", *args.get("--prompt")}};
  if (auto v = args.get("--negative-prompt")) data["negative_prompt"] = *v;
  if (auto v = args.get("--steps")) data["hyperparameters"]["num_inference_steps"] = std::stoi(*v);
  if (auto v = args.get("--seed")) data["hyperparameters"]["seed"] = std::stoll(*v);
  if (auto v = args.get("--width")) data["dimensions"]["width"] = std::stoi(*v);
  if (auto v = args.get("--height")) data["dimensions"]["height"] = std::stoi(*v);
  if (auto v = args.get("--save-path")) data["output"]["save_path"] = *v;
  if (auto v = args.get("--format")) data["output"]["format"] = *v;
  nlohmann::json envelope = {{"message_type", "inference_request"}, {"data", data}};
  ensure_request_id(envelope);
  return envelope;
}

}  // namespace

int generate_command(const Arguments& args) {
  nlohmann::json envelope;
  if (args.get("--prompt")) envelope = request_from_options(args);
  else if (args.positional.size() == 1) envelope = read_request_file(args.positional.front());
  else throw std::invalid_argument("generate needs REQUEST.json or --prompt TEXT");

  std::vector<std::string> warnings;
  HostConfig config = config_from_arguments(args, warnings);
  runtime::check_device(config.device);
  runtime::apply_thread_count(config.threads);
  runtime::HostService host(config, warnings);
  host.start();
  auto sink = std::make_shared<CollectingSink>();
  host.dispatcher().post(protocol::Client{transport::next_connection_id(), sink, nullptr}, envelope.dump());
  nlohmann::json response = sink->wait();
  host.request_shutdown("generate finished");
  host.wait_stopped();
  // invalid UTF-8 in a message is replaced, as on the wire (protocol::to_line)
  std::cout << response.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
  return response.value("success", false) ? 0 : 1;
}

/// `sdxl-host plugins`: a table for people on stdout (name, state, version, file, reason), or
/// with --json the describe() array for scripts. Config warnings go to stderr either way.
int plugins_command(const Arguments& args) {
  std::vector<std::string> warnings;
  HostConfig config = config_from_arguments(args, warnings);
  for (const auto& warning : warnings) std::cerr << "config: " << warning << "\n";
  PluginManager manager(runtime::plugin_settings(config));
  manager.load();
  const nlohmann::json described = manager.describe();
  if (args.has_flag("--json")) {
    std::cout << described.dump(2) << std::endl;
    return 0;
  }
  std::size_t name_width = 4, state_width = 5, version_width = 7;
  for (const auto& plugin : described) {
    name_width = std::max(name_width, plugin.value("name", "").size());
    state_width = std::max(state_width, plugin.value("state", "").size());
    version_width = std::max(version_width, plugin.value("version", "").size());
  }
  auto row = [&](const std::string& name, const std::string& state, const std::string& version,
                 const std::string& detail) {
    std::cout << std::left << std::setw(static_cast<int>(name_width)) << name << "  "
              << std::setw(static_cast<int>(state_width)) << state << "  "
              << std::setw(static_cast<int>(version_width)) << version << "  " << detail << "\n";
  };
  row("NAME", "STATE", "VERSION", "FILE / REASON");
  for (const auto& plugin : described) {
    const std::string reason = plugin.value("reason", "");
    row(plugin.value("name", "?"), plugin.value("state", "?"), plugin.value("version", ""),
        plugin.value("file", "") + (reason.empty() ? "" : "  (" + reason + ")"));
  }
  std::cout << "plugins.dir: " << config.plugins.dir.string() << "\n";
  return 0;
}

}  // namespace sdxlhost::host::cli
