// `sdxl-host generate`: one request through HostService::on_line, exactly as if a client had
// sent it, answered on an in-process connection.
#include <condition_variable>
#include <iostream>
#include <mutex>

#include "host/cli/commands.hpp"
#include "host/cli/request_file.hpp"
#include "host/runtime/host_service.hpp"
#include "host/runtime/threads.hpp"

namespace sdxlhost::host::cli {
namespace {

/// Prints progress events to stderr and keeps the final response.
class CollectingConnection : public transport::Connection {
 public:
  std::uint64_t id() const override { return id_; }
  bool is_open() const override { return true; }
  void close() override {}

  void send(std::string line) override {
    nlohmann::json message = nlohmann::json::parse(line, nullptr, false);
    if (message.is_object() && message.value("message_type", "") == "progress") {
      const auto& data = message["data"];
      std::cerr << "progress " << data.value("stage", "") << " " << data.value("step", 0) << "/"
                << data.value("total_steps", 0) << "\n";
      return;
    }
    std::lock_guard<std::mutex> lock(mutex_);
    response_ = std::move(message);
    done_ = true;
    answered_.notify_all();
  }

  /// Blocks until the response arrived.
  nlohmann::json wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    answered_.wait(lock, [this] { return done_; });
    return response_;
  }

 private:
  const std::uint64_t id_ = transport::next_connection_id();
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
  runtime::apply_thread_count(config.threads);
  runtime::HostService host(config, warnings);
  host.start();
  auto connection = std::make_shared<CollectingConnection>();
  host.on_line(connection, envelope.dump());
  nlohmann::json response = connection->wait();
  host.request_shutdown("generate finished");
  host.wait_stopped();
  std::cout << response.dump(2) << std::endl;
  return response.value("success", false) ? 0 : 1;
}

int plugins_command(const Arguments& args) {
  std::vector<std::string> warnings;
  HostConfig config = config_from_arguments(args, warnings);
  for (const auto& warning : warnings) std::cerr << "config: " << warning << "\n";
  PluginManager manager(runtime::plugin_settings(config));
  manager.load();
  nlohmann::json described = manager.describe();
  for (const auto& plugin : described)
    std::cerr << plugin.value("name", "?") << "  " << plugin.value("state", "?") << "  "
              << plugin.value("reason", "") << "\n";
  std::cout << described.dump(2) << std::endl;
  return 0;
}

}  // namespace sdxlhost::host::cli
