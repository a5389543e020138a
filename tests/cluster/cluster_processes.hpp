#pragma once
/// @file cluster_processes.hpp
/// What the cluster tests run as separate processes: a private RabbitMQ node (its own node name,
/// ports, epmd, data directory and Erlang cookie; stopped and removed after) and sdxl-host
/// processes (gateway, workers) that a test can kill -9. Plus a wire client that keeps every
/// line it reads, by request id.

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "host/transport/pipe_client.hpp"

namespace sdxlhost::test {

using nlohmann::json;

/// A free TCP port on 127.0.0.1 (bound once, then released).
int free_port();

/// A child process with its output in a log file.
class ChildProcess {
 public:
  ChildProcess() = default;
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  /// Starts `argv` with the current environment plus `env` (NAME -> value), stdout and stderr
  /// appended to `log`. Throws std::runtime_error when it cannot start.
  void start(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
             const std::filesystem::path& log);
  /// SIGKILL and reap.
  void kill9();
  /// SIGTERM, wait up to `grace`, then SIGKILL. Returns the exit status (-1 when killed).
  int terminate(std::chrono::milliseconds grace = std::chrono::seconds(15));
  /// Waits for the process to exit on its own; false on timeout.
  bool wait_exit(std::chrono::milliseconds timeout);
  /// True while it runs.
  bool running();
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
};

/// A private RabbitMQ node under `dir` (rabbitmq-server 3.10 of Debian 12).
class BrokerProcess {
 public:
  explicit BrokerProcess(std::filesystem::path dir);
  /// Stops the node and its epmd.
  ~BrokerProcess();
  /// Starts the node and waits until an AMQP login works (throws after `timeout`).
  void start(std::chrono::seconds timeout = std::chrono::seconds(90));
  /// rabbitmqctl stop, and waits for the node to exit. Messages in durable queues survive.
  void stop();
  /// amqp://guest:guest@127.0.0.1:<port>/
  std::string url() const;
  /// The node's log (for failure reports).
  std::filesystem::path log() const { return dir_ / "server.log"; }

 private:
  std::map<std::string, std::string> environment() const;

  std::filesystem::path dir_;
  std::string node_;
  int amqp_port_;
  int dist_port_;
  int epmd_port_;
  ChildProcess server_;
};

/// One wire connection that remembers every line it read, by request id.
class RecordingClient {
 public:
  explicit RecordingClient(const std::string& endpoint) : client_(endpoint) {}
  /// Sends one message.
  void send(const json& message);
  /// Reads lines until every id in `ids` has a final response or `timeout` passed; false on timeout.
  bool wait_for(const std::set<std::string>& ids, std::chrono::milliseconds timeout);
  /// Reads (and records) whatever arrives within `quiet`.
  void drain(std::chrono::milliseconds quiet);
  /// Sends and waits for the final response (null json on timeout).
  json request(const json& message, std::chrono::milliseconds timeout = std::chrono::seconds(20));
  /// Final responses per request id, in arrival order.
  std::map<std::string, std::vector<json>> finals;
  /// Progress events per request id.
  std::map<std::string, std::vector<json>> progress;
  /// Request ids in the order their (first) final response arrived.
  std::vector<std::string> answer_order;
  /// When the first final response of each request id arrived.
  std::map<std::string, std::chrono::steady_clock::time_point> answered_at;

 private:
  bool read_one(std::chrono::milliseconds timeout);
  host::transport::PipeClient client_;
};

/// An inference_request for the test_generate plugin: `steps` steps of `step_ms` ms each.
json test_job(const std::string& request_id, int steps, int step_ms, const std::string& priority = "normal",
              double timeout_s = 120);

}  // namespace sdxlhost::test
