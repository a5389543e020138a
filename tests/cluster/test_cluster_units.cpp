// Cluster pieces without a broker (label cluster, fast): the cluster.* config keys, the broker
// URL, and a gateway whose broker is unreachable: it still validates and plans exactly as a
// standalone host, and answers a job UNAVAILABLE naming the broker.
#include <fstream>
#include <condition_variable>
#include <mutex>

#include <gtest/gtest.h>

#include "common/temp_dir.hpp"
#include "host/cluster/amqp.hpp"
#include "host/cluster/gateway.hpp"
#include "host/config/host_config.hpp"
#include "host/runtime/host_service.hpp"
#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::test {
namespace {

using nlohmann::json;

std::string failing_key(const json& document) {
  std::vector<std::string> warnings;
  try {
    host::parse_config(document, "/base", warnings);
  } catch (const sdk::Error& error) {
    EXPECT_EQ(error.code(), sdk::ErrorCode::ValidationError);
    return error.field();
  }
  return "<accepted>";
}

TEST(ClusterConfig, DefaultsToStandalone_AndShowsTheBrokerWithoutItsPassword) {
  std::vector<std::string> warnings;
  auto config = host::parse_config(json::object(), "/base", warnings);
  EXPECT_EQ(config.cluster.role, "standalone");
  EXPECT_EQ(config.cluster.jobs_queue, "sdxl.jobs");
  config = host::parse_config(
      {{"cluster", {{"role", "gateway"}, {"broker", "amqp://user:secret@broker.example:5673/prod"}}}}, "/base",
      warnings);
  EXPECT_EQ(config.cluster.role, "gateway");
  const json shown = config.to_json()["cluster"];
  EXPECT_EQ(shown["broker"], "amqp://user@broker.example:5673/prod");
  EXPECT_EQ(shown.dump().find("secret"), std::string::npos);
  const auto address = host::cluster::parse_broker_url("amqp://user:secret@broker.example:5673/prod", "f");
  EXPECT_EQ(address.host, "broker.example");
  EXPECT_EQ(address.port, 5673);
  EXPECT_EQ(address.password, "secret");
  EXPECT_EQ(address.vhost, "prod");
  EXPECT_EQ(host::cluster::parse_broker_url("amqp://h/", "f").vhost, "/");
}

TEST(ClusterConfig, BadValuesNameTheirKey) {
  EXPECT_EQ(failing_key({{"cluster", {{"role", "boss"}}}}), "cluster.role");
  EXPECT_EQ(failing_key({{"cluster", {{"broker", "http://broker:5672/"}}}}), "cluster.broker");
  EXPECT_EQ(failing_key({{"cluster", {{"broker", "amqps://broker:5671/"}}}}), "cluster.broker");
  EXPECT_EQ(failing_key({{"cluster", {{"broker", ""}}}}), "cluster.broker");
  EXPECT_EQ(failing_key({{"cluster", {{"jobs_queue", ""}}}}), "cluster.jobs_queue");
  EXPECT_EQ(failing_key({{"cluster", {{"heartbeat_s", 2}, {"worker_timeout_s", 1}}}}), "cluster.worker_timeout_s");
  EXPECT_EQ(failing_key({{"cluster", {{"heartbeat_s", "often"}}}}), "cluster.heartbeat_s");
  std::vector<std::string> warnings;
  host::parse_config({{"cluster", {{"rol", "worker"}}}}, "/base", warnings);
  EXPECT_NE(std::find(warnings.begin(), warnings.end(), "unknown config key 'cluster.rol' ignored"), warnings.end());
}

/// Keeps the lines the host sends.
class RecordingConnection : public host::transport::Connection {
 public:
  std::uint64_t id() const override { return 77; }
  void send(std::string line) override {
    std::lock_guard<std::mutex> lock(mutex_);
    lines_.push_back(json::parse(line));
    arrived_.notify_all();
  }
  bool is_open() const override { return true; }
  void close() override {}
  std::size_t count() {
    std::lock_guard<std::mutex> lock(mutex_);
    return lines_.size();
  }
  /// The last line once there are more than `before` (null after 10 s without one): the host
  /// handles lines on its request thread, not on the caller's.
  json last_after(std::size_t before) {
    std::unique_lock<std::mutex> lock(mutex_);
    arrived_.wait_for(lock, std::chrono::seconds(10), [&] { return lines_.size() > before; });
    return lines_.size() > before ? lines_.back() : json();
  }

 private:
  std::mutex mutex_;
  std::condition_variable arrived_;
  std::vector<json> lines_;
};

class GatewayWithoutBroker : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(dir_.path() / "models" / "checkpoints");
    std::ofstream(dir_.path() / "models" / "checkpoints" / "tiny.safetensors") << "not really weights";
    json document = {{"pipe_name", (dir_.path() / "gw.sock").string()},
                     {"models_root", (dir_.path() / "models").string()},
                     {"output_root", (dir_.path() / "out").string()},
                     {"plugins", {{"dir", SDXLHOST_TEST_PLUGIN_DIR}}},
                     {"limits", {{"min_width", 8}, {"min_height", 8}}},
                     {"log_level", "warn"},
                     // Port 1 on loopback: nothing listens, the connect fails at once.
                     {"cluster", {{"role", "gateway"}, {"broker", "amqp://guest:guest@127.0.0.1:1/"}}}};
    std::vector<std::string> warnings;
    config_ = host::parse_config(document, dir_.path(), warnings);
    host_ = std::make_unique<host::runtime::HostService>(config_);
    gateway_ = std::make_unique<host::cluster::Gateway>(config_);
    host_->set_job_forwarder(gateway_.get());
    host_->start();
    gateway_->start();
  }
  void TearDown() override {
    host_->request_shutdown("test finished");
    host_->wait_stopped();
  }

  json ask(const json& message) {
    const std::size_t before = connection_->count();
    host_->on_line(connection_, message.dump());
    return connection_->last_after(before);
  }

  test_support::TempDir dir_;
  host::HostConfig config_;
  std::unique_ptr<host::runtime::HostService> host_;
  std::unique_ptr<host::cluster::Gateway> gateway_;
  std::shared_ptr<RecordingConnection> connection_ = std::make_shared<RecordingConnection>();
};

json job(const std::string& id) {
  return {{"message_type", "inference_request"},
          {"request_id", id},
          {"data",
           {{"prompt", "p"}, {"dimensions", {{"width", 16}, {"height", 8}}}, {"hyperparameters", {{"seed", 1}}}}}};
}

TEST_F(GatewayWithoutBroker, ValidatesAndPlansAsStandalone_AndAnswersJobsUnavailable) {
  json bad = job("bad");
  bad["data"]["dimensions"]["width"] = 1001;
  json answer = ask(bad);
  EXPECT_EQ(answer.value("error_code", ""), "VALIDATION_ERROR") << answer.dump();
  EXPECT_EQ(answer.value("field", ""), "data.dimensions.width");

  json dry = job("dry");
  dry["data"]["dry_run"] = true;
  answer = ask(dry);
  EXPECT_TRUE(answer.value("success", false)) << answer.dump();
  EXPECT_EQ(answer["data"]["stages"], json::array({"test_prepare", "test_denoise"}));

  answer = ask(job("real"));
  EXPECT_EQ(answer.value("error_code", ""), "UNAVAILABLE") << answer.dump();
  EXPECT_NE(answer.value("error", "").find("amqp://guest@127.0.0.1:1/"), std::string::npos) << answer.dump();

  // load_model goes to every worker: checked here first like on a standalone host, then refused.
  answer = ask({{"message_type", "load_model"}, {"request_id", "load"}, {"data", {{"name", "absent"}}}});
  EXPECT_EQ(answer.value("error_code", ""), "MODEL_NOT_FOUND") << answer.dump();
  answer = ask({{"message_type", "load_model"}, {"request_id", "load"}, {"data", {{"name", "tiny"}}}});
  EXPECT_EQ(answer.value("error_code", ""), "UNAVAILABLE") << answer.dump();
  answer = ask({{"message_type", "cancel"}, {"request_id", "c"}, {"data", {{"request_id", "real"}}}});
  EXPECT_EQ(answer.value("error_code", ""), "NOT_FOUND") << answer.dump();

  answer = ask({{"message_type", "status"}, {"request_id", "s"}});
  EXPECT_EQ(answer["data"]["cluster"].value("connected", true), false) << answer.dump();
  EXPECT_EQ(answer["data"]["cluster"].value("role", ""), "gateway");
  EXPECT_FALSE(host_->ready()) << "a gateway without its broker is not ready";
  answer = ask({{"message_type", "capabilities"}, {"request_id", "caps"}});
  EXPECT_NE(std::find(answer["data"]["error_codes"].begin(), answer["data"]["error_codes"].end(), "UNAVAILABLE"),
            answer["data"]["error_codes"].end());
}

}  // namespace
}  // namespace sdxlhost::test
