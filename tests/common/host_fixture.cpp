#include "common/host_fixture.hpp"

#include <fstream>
#include <random>

#include <boost/asio.hpp>
#include <gtest/gtest.h>

#include "host/common/logging.hpp"

namespace sdxlhost::test_support {
namespace {

json default_config(const std::filesystem::path& dir) {
  return {{"pipe_name", (dir / "host.sock").string()},
          {"plugins", {{"dir", SDXLHOST_TEST_PLUGIN_DIR}}},
          {"output_root", (dir / "out").string()},
          {"models_root", (dir / "models").string()},
          {"limits", {{"min_width", 8}, {"min_height", 8}}},
          {"queue", {{"progress_interval_ms", 0}, {"shutdown_grace_s", 2}}},
          {"log_level", "warn"}};
}

}  // namespace

std::filesystem::path make_temp_dir(const std::string& tag) {
  std::random_device random;
  auto dir = std::filesystem::temp_directory_path() /
             ("sdxlhost-" + tag + "-" + std::to_string(random() % 1000000000));
  std::filesystem::create_directories(dir);
  return dir;
}

json WireClient::next(std::chrono::milliseconds timeout) {
  auto line = client_.read_line(timeout);
  if (!line) {
    ADD_FAILURE() << "no line from the host within " << timeout.count() << " ms";
    return json();
  }
  json message = json::parse(*line, nullptr, false);
  EXPECT_FALSE(message.is_discarded()) << "host sent a line that is not JSON: " << *line;
  return message;
}

std::vector<json> WireClient::until_response(const std::string& request_id, std::chrono::milliseconds timeout) {
  std::vector<json> lines;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    json message = next(left);
    if (message.is_null()) break;
    lines.push_back(message);
    if (message.value("message_type", "") == "response" && message["request_id"] == request_id) return lines;
  }
  ADD_FAILURE() << "no response for " << request_id;
  return lines;
}

json WireClient::request(const json& message, std::chrono::milliseconds timeout) {
  send(message);
  auto lines = until_response(message.value("request_id", ""), timeout);
  return lines.empty() ? json() : lines.back();
}

HostFixture::HostFixture(const json& overrides) : dir_(make_temp_dir("host")) {
  std::filesystem::create_directories(dir_ / "models" / "checkpoints");
  std::ofstream(dir_ / "models" / "checkpoints" / "tiny.safetensors") << "not really weights";
  write_config(overrides);
  std::vector<std::string> warnings;
  host::HostConfig config = host::load_config(dir_ / "host.json", warnings);
  host::set_log_level(config.log_level);
  endpoint_ = config.pipe_name;
  host_ = std::make_unique<runtime::HostService>(config, warnings);
  transport::PipeServerSettings settings{endpoint_, config.socket_mode, config.limits.max_message_bytes,
                                         config.limits.max_client_backlog_bytes};
  server_ = std::make_unique<transport::PipeServer>(io_, settings, *host_);
  auto guard = std::make_shared<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>>(
      io_.get_executor());
  host_->set_on_stopped([this, guard] {
    boost::asio::post(io_, [this, guard] {
      server_->stop();
      guard->reset();
    });
  });
  host_->set_on_limits_changed([this](std::size_t bytes) {
    boost::asio::post(io_, [this, bytes] { server_->set_max_line_bytes(bytes); });
  });
  host_->set_client_count([this] { return server_->client_count(); });
  host_->start();
  server_->start();
  io_thread_ = std::thread([this] { io_.run(); });
}

HostFixture::~HostFixture() {
  host_->request_shutdown("test finished");
  host_->wait_stopped();
  if (io_thread_.joinable()) io_thread_.join();
  server_.reset();
  host_.reset();
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

void HostFixture::write_config(const json& overrides) {
  json config = default_config(dir_);
  config.update(overrides, /*merge_objects=*/true);
  std::ofstream(dir_ / "host.json") << config.dump(2);
}

json generation(const std::string& request_id, int steps, int step_ms, json extra) {
  json data = {{"prompt", "a test"},
               {"dimensions", {{"width", 16}, {"height", 8}}},
               {"hyperparameters", {{"num_inference_steps", steps}, {"seed", 7}}},
               {"test", {{"step_ms", step_ms}}}};
  data.update(extra, /*merge_objects=*/true);
  return {{"message_type", "inference_request"}, {"request_id", request_id}, {"data", data}};
}

}  // namespace sdxlhost::test_support
