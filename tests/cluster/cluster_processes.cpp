#include "cluster_processes.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <stdexcept>
#include <thread>

#include "host/cluster/amqp.hpp"

extern char** environ;

namespace sdxlhost::test {
namespace {

using namespace std::chrono_literals;

constexpr const char* kRabbitBin = "/usr/lib/rabbitmq/bin";

std::vector<std::string> merged_environment(const std::map<std::string, std::string>& overrides) {
  std::vector<std::string> env;
  for (char** entry = environ; *entry; ++entry) {
    std::string text(*entry);
    const std::string name = text.substr(0, text.find('='));
    if (!overrides.count(name)) env.push_back(text);
  }
  for (const auto& [name, value] : overrides) env.push_back(name + "=" + value);
  return env;
}

std::vector<char*> pointers(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

}  // namespace

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof(address);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    if (fd >= 0) ::close(fd);
    throw std::runtime_error("no free port");
  }
  ::close(fd);
  return ntohs(address.sin_port);
}

// ---- ChildProcess ------------------------------------------------------------------------------

ChildProcess::~ChildProcess() {
  if (pid_ > 0) kill9();
}

void ChildProcess::start(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
                         const std::filesystem::path& log) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  std::vector<std::string> args = argv, environment = merged_environment(env);
  auto arg_pointers = pointers(args);
  auto env_pointers = pointers(environment);
  int status = ::posix_spawn(&pid_, args[0].c_str(), &actions, nullptr, arg_pointers.data(), env_pointers.data());
  posix_spawn_file_actions_destroy(&actions);
  if (status != 0) {
    pid_ = -1;
    throw std::runtime_error("cannot start " + args[0] + ": " + std::strerror(status));
  }
}

void ChildProcess::kill9() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
}

bool ChildProcess::wait_exit(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return true;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return true;
    }
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

int ChildProcess::terminate(std::chrono::milliseconds grace) {
  if (pid_ <= 0) return 0;
  ::kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + grace;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    std::this_thread::sleep_for(20ms);
  }
  kill9();
  return -1;
}

bool ChildProcess::running() {
  if (pid_ <= 0) return false;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) == pid_) {
    pid_ = -1;
    return false;
  }
  return true;
}

// ---- BrokerProcess -----------------------------------------------------------------------------

BrokerProcess::BrokerProcess(std::filesystem::path dir)
    : dir_(std::move(dir)),
      node_("sdxltest" + std::to_string(::getpid()) + "@localhost"),
      amqp_port_(free_port()),
      dist_port_(free_port()),
      epmd_port_(free_port()) {
  std::filesystem::create_directories(dir_ / "mnesia");
  std::filesystem::create_directories(dir_ / "log");
  // guest may log in from 127.0.0.1 (the default), nothing else listens beyond loopback.
  std::ofstream(dir_ / "rabbitmq.conf") << "listeners.tcp.default = 127.0.0.1:" << amqp_port_ << "\n"
                                        << "log.console = false\n";
  std::ofstream(dir_ / "enabled_plugins") << "[].\n";
  std::ofstream(dir_ / "rabbitmq-env.conf") << "";
}

BrokerProcess::~BrokerProcess() {
  try {
    stop();
  } catch (...) {
  }
  ChildProcess epmd;  // the node's private epmd (ERL_EPMD_PORT) outlives the node: end it
  try {
    epmd.start({"/usr/bin/epmd", "-port", std::to_string(epmd_port_), "-kill"}, environment(), dir_ / "epmd.log");
    epmd.wait_exit(5s);
  } catch (...) {
  }
}

std::map<std::string, std::string> BrokerProcess::environment() const {
  return {{"HOME", dir_.string()},  // a private Erlang cookie
          {"RABBITMQ_NODENAME", node_},
          {"RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1"},
          {"RABBITMQ_NODE_PORT", std::to_string(amqp_port_)},
          {"RABBITMQ_DIST_PORT", std::to_string(dist_port_)},
          {"ERL_EPMD_PORT", std::to_string(epmd_port_)},
          {"RABBITMQ_MNESIA_BASE", (dir_ / "mnesia").string()},
          {"RABBITMQ_LOG_BASE", (dir_ / "log").string()},
          {"RABBITMQ_CONFIG_FILE", (dir_ / "rabbitmq").string()},
          {"RABBITMQ_CONF_ENV_FILE", (dir_ / "rabbitmq-env.conf").string()},
          {"RABBITMQ_ENABLED_PLUGINS_FILE", (dir_ / "enabled_plugins").string()},
          {"RABBITMQ_PID_FILE", (dir_ / "rabbit.pid").string()}};
}

std::string BrokerProcess::url() const { return "amqp://guest:guest@127.0.0.1:" + std::to_string(amqp_port_) + "/"; }

void BrokerProcess::start(std::chrono::seconds timeout) {
  const std::string server = std::string(kRabbitBin) + "/rabbitmq-server";
  if (!std::filesystem::exists(server))
    throw std::runtime_error(server + " is missing: install rabbitmq-server (scripts/setup does)");
  server_.start({server}, environment(), log());
  const auto address = host::cluster::parse_broker_url(url(), "broker");
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string last;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!server_.running()) throw std::runtime_error("rabbitmq-server exited while starting; see " + log().string());
    try {
      host::cluster::AmqpConnection probe(address, 0, 1.0, "sdxl-host test probe");
      return;
    } catch (const std::exception& error) {
      last = error.what();
    }
    std::this_thread::sleep_for(200ms);
  }
  throw std::runtime_error("rabbitmq-server did not accept AMQP logins in time: " + last);
}

void BrokerProcess::stop() {
  if (!server_.running()) return;
  ChildProcess ctl;
  ctl.start({std::string(kRabbitBin) + "/rabbitmqctl", "-n", node_, "stop"}, environment(), dir_ / "ctl.log");
  ctl.wait_exit(60s);
  if (!server_.wait_exit(60s)) server_.kill9();
}

// ---- RecordingClient ---------------------------------------------------------------------------

void RecordingClient::send(const json& message) { client_.send_line(message.dump()); }

bool RecordingClient::read_one(std::chrono::milliseconds timeout) {
  auto line = client_.read_line(timeout);
  if (!line) return false;
  json message = json::parse(*line, nullptr, false);
  if (!message.is_object()) throw std::runtime_error("the gateway sent a line that is not a JSON object: " + *line);
  const std::string id = message["request_id"].is_string() ? message["request_id"].get<std::string>() : "";
  if (message.value("message_type", "") == "response") {
    if (finals[id].empty()) {
      answer_order.push_back(id);
      answered_at[id] = std::chrono::steady_clock::now();
    }
    finals[id].push_back(message);
  } else {
    progress[id].push_back(message);
  }
  return true;
}

bool RecordingClient::wait_for(const std::set<std::string>& ids, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto missing = [&] {
    for (const auto& id : ids)
      if (finals[id].empty()) return true;
    return false;
  };
  while (missing()) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || client_.closed()) return false;
    read_one(left);
  }
  return true;
}

void RecordingClient::drain(std::chrono::milliseconds quiet) {
  while (read_one(quiet)) {
  }
}

json RecordingClient::request(const json& message, std::chrono::milliseconds timeout) {
  const std::string id = message.value("request_id", "");
  finals.erase(id);
  send(message);
  if (!wait_for({id}, timeout)) return json();
  return finals[id].front();
}

json test_job(const std::string& request_id, int steps, int step_ms, const std::string& priority, double timeout_s) {
  return {{"message_type", "inference_request"},
          {"request_id", request_id},
          {"data",
           {{"prompt", "a cluster test"},
            {"dimensions", {{"width", 16}, {"height", 8}}},
            {"hyperparameters", {{"num_inference_steps", steps}, {"seed", 7}}},
            {"metadata", {{"priority", priority}, {"timeout", timeout_s}}},
            {"test", {{"step_ms", step_ms}}}}}};
}

}  // namespace sdxlhost::test
