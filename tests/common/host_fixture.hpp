#pragma once
/// @file host_fixture.hpp
/// An in-process host for the socket tests: writes a config file into a fresh temp folder,
/// starts HostService + PipeServer on an I/O thread at an absolute socket path, and gives
/// clients that speak the wire protocol.

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include "host/runtime/host_service.hpp"
#include "host/transport/pipe_client.hpp"
#include "host/transport/pipe_server.hpp"

namespace sdxlhost::test_support {

using nlohmann::json;
using namespace std::chrono_literals;
namespace runtime = host::runtime;
namespace transport = host::transport;

/// A wire client with helpers to send envelopes and wait for their answers.
class WireClient {
 public:
  explicit WireClient(const std::string& endpoint) : client_(endpoint) {}
  /// Sends `message` as one line.
  void send(const json& message) { client_.send_line(message.dump()); }
  /// Sends raw bytes.
  void send_raw(const std::string& bytes) { client_.write(bytes); }
  /// The next line as JSON (fails the test on timeout).
  json next(std::chrono::milliseconds timeout = 10s);
  /// Lines up to and including the response to `request_id` (progress events first).
  std::vector<json> until_response(const std::string& request_id, std::chrono::milliseconds timeout = 20s);
  /// Sends and returns the response to it.
  json request(const json& message, std::chrono::milliseconds timeout = 20s);
  transport::PipeClient& raw() { return client_; }

 private:
  transport::PipeClient client_;
};

/// A served host with its own temp folder and config file.
class HostFixture {
 public:
  /// `overrides` are merged into the default test config (plugins.dir = test plugins,
  /// output_root/models_root in the temp folder, sizes from 8 px).
  explicit HostFixture(const json& overrides = json::object());
  ~HostFixture();

  std::unique_ptr<WireClient> client() const { return std::make_unique<WireClient>(endpoint_); }
  const std::string& endpoint() const { return endpoint_; }
  const std::filesystem::path& dir() const { return dir_; }
  /// Rewrites the config file with `overrides` merged into the defaults (for reload_config).
  void write_config(const json& overrides);
  runtime::HostService& host() { return *host_; }
  transport::PipeServer& server() { return *server_; }

 private:
  std::filesystem::path dir_;
  std::string endpoint_;
  boost::asio::io_context io_;
  std::unique_ptr<runtime::HostService> host_;
  std::unique_ptr<transport::PipeServer> server_;
  std::thread io_thread_;
};

/// An inference_request envelope for the test_generate plugin.
json generation(const std::string& request_id, int steps = 3, int step_ms = 1, json extra = json::object());

/// A unique temp folder (removed by the caller).
std::filesystem::path make_temp_dir(const std::string& tag);

}  // namespace sdxlhost::test_support
