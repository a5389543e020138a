// The cluster roles with a real broker (labels cluster, slow; issue 19): a private rabbitmq-server,
// one gateway and up to three workers as separate sdxl-host processes, with the test-only
// plugins (test_generate's steps take a known time) and, for one real generation, the sdxl plugin
// on the goldens' tiny model. The cases run in order and share the cluster:
// throughput with 1, 2, 3 workers; 100 mixed-priority jobs answered exactly once; validation and
// FEATURE_DISABLED at the gateway; a worker killed mid-job; cancel of queued and running jobs;
// a broker restart; the tiny model through a gateway equal to the golden image.
#include <fstream>
#include <iostream>
#include <iomanip>
#include <memory>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "cluster_processes.hpp"
#include "sdxlhost/nn/image_decode.hpp"

namespace sdxlhost::test {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

const std::string kHostBinary = std::string(SDXLHOST_BINARY_DIR) + "/bin/sdxl-host";

fs::path make_dir() {
  auto dir = fs::temp_directory_path() / ("sdxlhost-cluster-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string tail_of(const fs::path& file, std::size_t bytes = 3000) {
  std::ifstream in(file, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return text.size() > bytes ? text.substr(text.size() - bytes) : text;
}

/// The broker, one gateway and the workers, shared by every case of the suite.
class Cluster {
 public:
  /// `names`: queue/exchange suffix, so two clusters on one broker stay apart.
  Cluster(const fs::path& dir, const std::string& broker_url, const std::string& names, const std::string& plugins,
          const json& extra = json::object())
      : dir_(dir), broker_url_(broker_url), names_(names), plugins_(plugins), extra_(extra) {
    fs::create_directories(dir_ / "models" / "checkpoints");
    if (!fs::exists(dir_ / "models" / "checkpoints" / "tiny.safetensors"))
      std::ofstream(dir_ / "models" / "checkpoints" / "tiny.safetensors") << "not really weights";
  }

  std::string endpoint() const { return (dir_ / "gateway.sock").string(); }
  fs::path log_of(const std::string& name) const { return dir_ / (name + ".log"); }

  json config(const std::string& role, const std::string& name, const json& overrides = json::object()) const {
    json config = {{"pipe_name", endpoint()},
                   {"models_root", (dir_ / "models").string()},
                   {"output_root", (dir_ / "out").string()},
                   {"plugins", {{"dir", plugins_}}},
                   {"limits", {{"min_width", 8}, {"min_height", 8}}},
                   {"queue", {{"progress_interval_ms", 0}, {"shutdown_grace_s", 2}, {"max_pending", 500}}},
                   {"threads", 1},
                   {"log_level", "info"},
                   {"cluster",
                    {{"role", role},
                     {"broker", broker_url_},
                     {"node_name", name},
                     {"jobs_queue", "sdxl.jobs." + names_},
                     {"cancel_exchange", "sdxl.cancel." + names_},
                     {"heartbeat_exchange", "sdxl.heartbeats." + names_},
                     {"reply_queue", "sdxl.replies." + names_},
                     {"heartbeat_s", 0.3},
                     {"worker_timeout_s", 1.5},
                     {"reconnect_max_s", 0.5}}}};
    config.update(extra_, true);
    config.update(overrides, true);
    return config;
  }

  void start(const std::string& role, const std::string& name, const json& overrides = json::object()) {
    const fs::path file = dir_ / (name + ".json");
    std::ofstream(file) << config(role, name, overrides).dump(2);
    auto& process = processes_[name];
    process = std::make_unique<ChildProcess>();
    process->start({kHostBinary, "serve", "--config", file.string()}, {}, log_of(name));
  }

  /// A worker with the test plugins, except test_upscale (so the gateway, which has it, can
  /// show FEATURE_DISABLED for a feature no worker serves).
  void start_worker(const std::string& name) {
    start("worker", name, {{"plugins", {{"enabled", {{"test_upscale", false}}}}}});
  }

  void start_gateway() {
    start("gateway", "gateway");
    for (int i = 0; i < 300 && !fs::exists(endpoint()); ++i) std::this_thread::sleep_for(50ms);
    ASSERT_TRUE(fs::exists(endpoint())) << tail_of(log_of("gateway"));
    admin_ = std::make_unique<RecordingClient>(endpoint());
  }

  ChildProcess& process(const std::string& name) { return *processes_.at(name); }

  /// The gateway's status answer.
  json status() {
    const json response = admin_->request({{"message_type", "status"}, {"request_id", next_id("status")}});
    return response.value("data", json::object());
  }

  /// Names of the live workers in the gateway's status.
  std::set<std::string> live_workers() {
    std::set<std::string> names;
    for (const auto& worker : status()["cluster"].value("workers", json::array()))
      if (worker.value("ready", false)) names.insert(worker.value("node", ""));
    return names;
  }

  /// Waits until exactly `names` are the live, ready workers.
  bool wait_for_workers(const std::set<std::string>& names, std::chrono::seconds timeout = 60s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (live_workers() == names) return true;
      std::this_thread::sleep_for(100ms);
    }
    return false;
  }

  std::string next_id(const std::string& prefix) { return prefix + "-" + std::to_string(++sequence_); }

  void stop_all() {
    for (auto& [name, process] : processes_) process->terminate(10s);
  }

  std::string logs() const {
    std::string out;
    for (const auto& [name, process] : processes_) out += "---- " + name + " ----\n" + tail_of(log_of(name), 1500);
    return out;
  }

 private:
  fs::path dir_;
  std::string broker_url_;
  std::string names_;
  std::string plugins_;
  json extra_;
  std::map<std::string, std::unique_ptr<ChildProcess>> processes_;
  std::unique_ptr<RecordingClient> admin_;
  int sequence_ = 0;
};

class ClusterTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(make_dir());
    broker_ = new BrokerProcess(*dir_ / "broker");
    broker_->start();
    cluster_ = new Cluster(*dir_ / "test", broker_->url(), "test", SDXLHOST_TEST_PLUGIN_DIR);
    cluster_->start_gateway();
    cluster_->start_worker("worker-1");
  }

  static void TearDownTestSuite() {
    if (::testing::UnitTest::GetInstance()->failed_test_count() > 0) {
      std::cerr << cluster_->logs() << "---- broker ----\n" << tail_of(broker_->log(), 2000) << "\n";
    }
    cluster_->stop_all();
    delete cluster_;
    delete broker_;
    if (::testing::UnitTest::GetInstance()->failed_test_count() == 0) fs::remove_all(*dir_);
    else std::cerr << "cluster test files kept in " << *dir_ << "\n";
    delete dir_;
  }

  /// Sends `jobs` at once on one connection and waits for all answers; returns the seconds taken.
  static double run_batch(RecordingClient& client, const std::vector<json>& jobs, std::chrono::seconds timeout) {
    std::set<std::string> ids;
    const auto start = std::chrono::steady_clock::now();
    for (const auto& job : jobs) {
      ids.insert(job.value("request_id", ""));
      client.send(job);
    }
    EXPECT_TRUE(client.wait_for(ids, timeout)) << cluster_->logs();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }

  static fs::path* dir_;
  static BrokerProcess* broker_;
  static Cluster* cluster_;
};

fs::path* ClusterTest::dir_ = nullptr;
BrokerProcess* ClusterTest::broker_ = nullptr;
Cluster* ClusterTest::cluster_ = nullptr;

// Throughput with 1, 2, 3 workers: 24 jobs of 4 steps x 25 ms ("GPU" time 100 ms each).
TEST_F(ClusterTest, Throughput_GrowsWithWorkers) {
  ASSERT_TRUE(cluster_->wait_for_workers({"worker-1"})) << cluster_->logs();
  RecordingClient client(cluster_->endpoint());
  constexpr int kJobs = 24, kSteps = 4, kStepMs = 25;
  std::vector<double> seconds;
  for (int workers = 1; workers <= 3; ++workers) {
    if (workers > 1) {
      cluster_->start_worker("worker-" + std::to_string(workers));
      std::set<std::string> names;
      for (int i = 1; i <= workers; ++i) names.insert("worker-" + std::to_string(i));
      ASSERT_TRUE(cluster_->wait_for_workers(names)) << cluster_->logs();
    }
    std::vector<json> jobs;
    for (int i = 0; i < kJobs; ++i)
      jobs.push_back(test_job(cluster_->next_id("tp" + std::to_string(workers)), kSteps, kStepMs));
    seconds.push_back(run_batch(client, jobs, 60s));
    for (const auto& job : jobs) {
      const auto& answers = client.finals[job.value("request_id", "")];
      ASSERT_EQ(answers.size(), 1u);
      EXPECT_TRUE(answers[0].value("success", false)) << answers[0].dump();
    }
  }
  std::cout << "\n| workers | jobs | wall s | jobs/s | vs 1 worker |\n|---|---|---|---|---|\n";
  for (int i = 0; i < 3; ++i)
    std::cout << "| " << i + 1 << " | " << kJobs << " | " << std::fixed << std::setprecision(2) << seconds[i]
              << " | " << kJobs / seconds[i] << " | " << seconds[0] / seconds[i] << "x |\n";
  std::cout << "(each job: " << kSteps << " steps x " << kStepMs << " ms in test_generate; ideal "
            << kJobs * kSteps * kStepMs / 1000.0 << " s of work)\n";
  EXPECT_GT(seconds[0] / seconds[2], 1.5) << "three workers should finish well before one";
}

// 100 jobs of mixed priority, pipelined on two connections: each answered exactly once, and
// the broker's priorities show: high jobs sent after a backlog of low ones finish before them.
TEST_F(ClusterTest, HundredMixedPriorityJobs_AnsweredExactlyOnce) {
  ASSERT_TRUE(cluster_->wait_for_workers({"worker-1", "worker-2", "worker-3"})) << cluster_->logs();
  RecordingClient first(cluster_->endpoint()), second(cluster_->endpoint());
  std::map<std::string, std::string> priority_of;
  auto send = [&](RecordingClient& client, const std::string& priority, int count) {
    std::set<std::string> ids;
    for (int i = 0; i < count; ++i) {
      const std::string id = cluster_->next_id("mix-" + priority);
      priority_of[id] = priority;
      ids.insert(id);
      client.send(test_job(id, 2, 40, priority));  // 80 ms each: 100 jobs are ~3 s on 3 workers
    }
    return ids;
  };
  std::set<std::string> ids_first = send(first, "low", 40);
  for (const auto& id : send(first, "normal", 20)) ids_first.insert(id);
  json queue;
  for (int i = 0; i < 100; ++i) {  // the lows wait on the broker before any high is sent
    queue = cluster_->status()["queue"];
    if (queue["low"].size() >= 20) break;
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_GE(queue["low"].size(), 20u) << queue.dump();
  const std::set<std::string> ids_second = send(second, "high", 40);
  // Both connections read at once, so each answer's time is when it arrived.
  bool second_done = false;
  std::thread reader([&] { second_done = second.wait_for(ids_second, 90s); });
  const bool first_done = first.wait_for(ids_first, 90s);
  reader.join();
  ASSERT_TRUE(first_done && second_done) << cluster_->logs();
  first.drain(500ms);  // anything doubled would arrive now
  second.drain(10ms);
  std::size_t answered = 0;
  for (auto* client : {&first, &second})
    for (const auto& [id, answers] : client->finals) {
      EXPECT_EQ(answers.size(), 1u) << id << " answered " << answers.size() << " times";
      EXPECT_TRUE(answers.front().value("success", false)) << answers.front().dump();
      EXPECT_EQ(answers.front()["data"]["generated_images"].size(), 1u);
      ++answered;
    }
  EXPECT_EQ(answered, 100u);
  EXPECT_EQ(second.finals.count(first.answer_order.front()), 0u) << "answers go to the connection that asked";
  // FIFO would finish every low (sent first) before any high; priorities finish the highs first.
  auto last_answer = [&](RecordingClient& client, const std::string& priority) {
    std::chrono::steady_clock::time_point last{};
    for (const auto& [id, at] : client.answered_at)
      if (priority_of[id] == priority) last = std::max(last, at);
    return last;
  };
  EXPECT_LT(last_answer(second, "high"), last_answer(first, "low"));
  EXPECT_LT(last_answer(second, "high"), last_answer(first, "normal"));
  const json status = cluster_->status();
  EXPECT_EQ(status["cluster"].value("in_flight", -1), 0) << status.dump();
}

// What the gateway refuses itself: the same validation errors and dry runs as a standalone host,
// and FEATURE_DISABLED for a feature no live worker serves (the workers have test_upscale off;
// the gateway has it, so it parses the request as a standalone host would).
TEST_F(ClusterTest, Gateway_ValidatesLikeStandalone_AndRefusesFeaturesNoWorkerServes) {
  RecordingClient client(cluster_->endpoint());
  json bad = test_job("bad-width", 2, 1);
  bad["data"]["dimensions"]["width"] = 1001;
  const json refused = client.request(bad);
  EXPECT_EQ(refused.value("error_code", ""), "VALIDATION_ERROR") << refused.dump();
  EXPECT_EQ(refused.value("field", ""), "data.dimensions.width");

  json dry = test_job("dry", 2, 1);
  dry["data"]["dry_run"] = true;
  const json planned = client.request(dry);
  EXPECT_TRUE(planned.value("success", false)) << planned.dump();
  EXPECT_EQ(planned["data"]["stages"], json::array({"test_prepare", "test_denoise"})) << planned.dump();

  json upscale = test_job("needs-upscaler", 2, 1);
  upscale["data"]["output"] = {{"upscale", {{"scale", 2}}}};
  const json disabled = client.request(upscale);
  EXPECT_EQ(disabled.value("error_code", ""), "FEATURE_DISABLED") << disabled.dump();
  EXPECT_NE(disabled.value("error", "").find("upscaler"), std::string::npos) << disabled.dump();

  const json capabilities = client.request({{"message_type", "capabilities"}, {"request_id", "caps"}});
  const json workers = capabilities["data"]["cluster"]["workers"];
  EXPECT_EQ(workers.size(), 3u) << capabilities.dump();
  for (const auto& worker : workers)
    EXPECT_NE(std::find(worker["features"].begin(), worker["features"].end(), "test_generate"),
              worker["features"].end());
}

// kill -9 of the worker running a job: the broker redelivers it, another worker completes it,
// the client gets one answer.
TEST_F(ClusterTest, WorkerKilledMidJob_ItsJobIsRedeliveredAndAnsweredOnce) {
  ASSERT_TRUE(cluster_->wait_for_workers({"worker-1", "worker-2", "worker-3"})) << cluster_->logs();
  RecordingClient client(cluster_->endpoint());
  const std::string id = cluster_->next_id("victim");
  client.send(test_job(id, 30, 100));  // 3 s
  std::string worker;
  json status;
  for (int i = 0; i < 100 && worker.empty(); ++i) {
    client.drain(50ms);
    if (client.progress[id].empty()) continue;
    status = cluster_->status();
    for (const auto& job : status["running"])
      if (job.value("request_id", "") == id) worker = job.value("worker", "");
  }
  ASSERT_FALSE(worker.empty()) << "progress events: " << client.progress[id].size() << "; status: " << status.dump();
  cluster_->process(worker).kill9();
  ASSERT_TRUE(client.wait_for({id}, 60s)) << cluster_->logs();
  client.drain(500ms);
  ASSERT_EQ(client.finals[id].size(), 1u);
  EXPECT_TRUE(client.finals[id][0].value("success", false)) << client.finals[id][0].dump();
  status = cluster_->status();
  EXPECT_GE(status["cluster"].value("redeliveries", 0), 1) << status.dump();
  // Bring the worker back for the cases after this one.
  cluster_->start_worker(worker);
  ASSERT_TRUE(cluster_->wait_for_workers({"worker-1", "worker-2", "worker-3"})) << cluster_->logs();
}

// cancel reaches a running job's worker (fanout) and answers a queued one at once; a worker
// that receives the cancelled job later drops it.
TEST_F(ClusterTest, Cancel_OfQueuedAndRunningJobs) {
  RecordingClient client(cluster_->endpoint());
  RecordingClient other(cluster_->endpoint());
  std::vector<std::string> running;
  for (int i = 0; i < 3; ++i) {
    running.push_back(cluster_->next_id("busy"));
    client.send(test_job(running.back(), 100, 100));  // 10 s each: every worker busy
  }
  for (int i = 0; i < 100; ++i) {
    if (cluster_->status()["running"].size() == 3) break;
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_EQ(cluster_->status()["running"].size(), 3u) << cluster_->logs();
  const std::string queued = cluster_->next_id("waiting");
  client.send(test_job(queued, 2, 1));
  json queue;
  for (int i = 0; i < 50; ++i) {
    queue = cluster_->status()["queue"];
    if (queue["normal"].size() == 1) break;
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_EQ(queue["normal"], json::array({queued})) << queue.dump();
  std::this_thread::sleep_for(300ms);  // published (a confirm takes a millisecond): on the broker now

  const json cancel_queued = other.request(
      {{"message_type", "cancel"}, {"request_id", "c1"}, {"data", {{"request_id", queued}}}});
  EXPECT_EQ(cancel_queued["data"].value("state", ""), "queued") << cancel_queued.dump();
  for (const auto& id : running) {
    const json cancel = other.request(
        {{"message_type", "cancel"}, {"request_id", "c-" + id}, {"data", {{"request_id", id}}}});
    EXPECT_EQ(cancel["data"].value("state", ""), "running") << cancel.dump();
  }
  std::set<std::string> all(running.begin(), running.end());
  all.insert(queued);
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(client.wait_for(all, 20s)) << cluster_->logs();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  client.drain(500ms);
  for (const auto& id : all) {
    ASSERT_EQ(client.finals[id].size(), 1u) << id;
    EXPECT_EQ(client.finals[id][0].value("error_code", ""), "CANCELLED") << client.finals[id][0].dump();
  }
  EXPECT_LT(seconds, 5.0) << "running jobs stop within a step or so, not after their 10 s";
  std::cout << "cancel: 1 queued + 3 running jobs answered CANCELLED within " << std::fixed << std::setprecision(3)
            << seconds << " s of the cancels\n";
  const json unknown = other.request(
      {{"message_type", "cancel"}, {"request_id", "c2"}, {"data", {{"request_id", queued}}}});
  EXPECT_EQ(unknown.value("error_code", ""), "NOT_FOUND");
  // The cancelled job was still on the broker: the worker that got it dropped it unrun.
  bool dropped = false;
  for (int i = 0; i < 50 && !dropped; ++i) {
    for (const char* name : {"worker-1", "worker-2", "worker-3"})
      dropped = dropped || tail_of(cluster_->log_of(name), 1 << 20).find("[" + queued + "] dropped: cancelled") !=
                               std::string::npos;
    if (!dropped) std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(dropped) << "no worker reported dropping " << queued;
}

// A broker restart: jobs already handed over survive (durable queue, persistent messages) and
// are answered once each; while it is down new requests get UNAVAILABLE; everyone reconnects.
TEST_F(ClusterTest, BrokerRestart_KeepsQueuedJobs_RefusesWhileDown_Reconnects) {
  ASSERT_TRUE(cluster_->wait_for_workers({"worker-1", "worker-2", "worker-3"})) << cluster_->logs();
  RecordingClient client(cluster_->endpoint());
  std::set<std::string> ids;
  for (int i = 0; i < 9; ++i) {
    const std::string id = cluster_->next_id("survivor");
    ids.insert(id);
    client.send(test_job(id, 10, 100));  // 1 s each: three rounds of three
  }
  for (int i = 0; i < 100; ++i) {  // every job handed to the broker (confirmed) before it stops
    const json status = cluster_->status();
    if (status["running"].size() == 3 && status["queue"].value("depth", 0) == 6) break;
    std::this_thread::sleep_for(50ms);
  }
  broker_->stop();
  json refused;
  for (int i = 0; i < 100; ++i) {  // the gateway notices at its next broker call
    refused = client.request(test_job(cluster_->next_id("refused"), 1, 1), 10s);
    if (refused.value("error_code", "") == "UNAVAILABLE") break;
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(refused.value("error_code", ""), "UNAVAILABLE") << refused.dump();
  EXPECT_NE(refused.value("error", "").find("broker"), std::string::npos) << refused.dump();
  broker_->start();
  ASSERT_TRUE(client.wait_for(ids, 90s)) << cluster_->logs();
  client.drain(1s);
  for (const auto& id : ids) {
    ASSERT_EQ(client.finals[id].size(), 1u) << id;
    EXPECT_TRUE(client.finals[id][0].value("success", false)) << client.finals[id][0].dump();
  }
  ASSERT_TRUE(cluster_->wait_for_workers({"worker-1", "worker-2", "worker-3"})) << cluster_->logs();
  const json after = client.request(test_job(cluster_->next_id("after"), 2, 1));
  EXPECT_TRUE(after.value("success", false)) << after.dump();
  const json counters = cluster_->status()["cluster"];
  std::cout << "broker restart: 9 jobs answered once each; the gateway saw " << counters.value("redeliveries", 0)
            << " redelivered job(s) in this suite and dropped " << counters.value("duplicates_dropped", 0)
            << " duplicate final answer(s); " << counters.value("reconnects", 0) << " reconnect(s)\n";
}

// One real generation: the sdxl plugin on the goldens' tiny model, through a gateway and a
// worker of their own (own queues on the same broker); the image equals the golden within 1/255.
TEST_F(ClusterTest, TinyModelThroughTheCluster_MatchesTheGolden) {
  const fs::path goldens = fs::path(SDXLHOST_SHARED_DIR) / "goldens";
  const fs::path real_dir = *dir_ / "real";
  fs::create_directories(real_dir / "models" / "checkpoints");
  fs::copy(goldens / "models" / "tiny_sdxl", real_dir / "models" / "checkpoints" / "tiny",
           fs::copy_options::recursive);
  Cluster real(real_dir, broker_->url(), "real", SDXLHOST_PLUGIN_DIR,
               {{"plugins", {{"enabled", {{"sdxl", true}, {"schedulers", true}}}, {"enable_unlisted", false}}}});
  real.start_gateway();
  real.start("worker", "real-worker");
  ASSERT_TRUE(real.wait_for_workers({"real-worker"})) << real.logs();
  RecordingClient client(real.endpoint());
  const json response = client.request(
      {{"message_type", "inference_request"},
       {"request_id", "cat"},
       {"data",
        {{"prompt", "a photo of a cat"},
         {"models", {{"base", "tiny"}}},
         {"hyperparameters", {{"num_inference_steps", 3}, {"guidance_scale", 5.0}, {"seed", 0}}},
         {"dimensions", {{"width", 64}, {"height", 64}}},
         {"scheduler", "EulerDiscreteScheduler"},
         {"output", {{"format", "png"}}}}}},
      120s);
  ASSERT_TRUE(response.value("success", false)) << response.dump() << real.logs();
  EXPECT_GE(client.progress["cat"].size(), 3u);
  EXPECT_EQ(response["data"]["stages"], json::array({"encode_prompt", "prepare_latents", "denoise", "vae_decode"}));
  const auto image = nn::decode_base64_image(response["data"]["generated_images"][0].value("image_data", ""), "image");
  std::ifstream in(goldens / "models" / "reference" / "pipeline_3steps.png", std::ios::binary);
  const auto golden =
      nn::decode_image_rgb(std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>()), "golden");
  ASSERT_EQ(image.width, golden.width);
  ASSERT_EQ(image.height, golden.height);
  int worst = 0;
  for (std::size_t i = 0; i < image.pixels.size(); ++i)
    worst = std::max(worst, std::abs(int(image.pixels[i]) - int(golden.pixels[i])));
  EXPECT_LE(worst, 1);
  real.stop_all();
}

}  // namespace
}  // namespace sdxlhost::test
