// Jobs over a real socket: cancel (queued and running), timeout, priority order, QUEUE_FULL,
// a client that disconnects mid-job, and shutdown with work queued.
#include <algorithm>
#include <atomic>
#include <mutex>

#include <gtest/gtest.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include "host/common/log_escape.hpp"
#include "host/common/logging.hpp"
#include "common/host_fixture.hpp"

namespace sdxlhost::test_support {
namespace {

json message(const std::string& type, const std::string& id, json data = json::object()) {
  return {{"message_type", type}, {"request_id", id}, {"data", data}};
}

/// A log sink that keeps the lines ("[component] message") written while capturing is on.
class CaptureSink : public spdlog::sinks::base_sink<std::mutex> {
 public:
  CaptureSink() { set_pattern_("[%n] %v"); }
  /// Starts or stops keeping lines.
  void capture(bool on) { capturing_.store(on); }
  /// Forgets the lines kept so far.
  void clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    lines_.clear();
  }
  /// The lines kept so far.
  std::vector<std::string> lines() {
    std::lock_guard<std::mutex> lock(mutex_);
    return lines_;
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& message) override {
    if (!capturing_.load()) return;
    spdlog::memory_buf_t formatted;
    formatter_->format(message, formatted);
    lines_.emplace_back(formatted.data(), formatted.size());
    while (!lines_.empty() && (lines_.back().back() == '\n' || lines_.back().back() == '\r')) lines_.back().pop_back();
  }
  void flush_() override {}

 private:
  std::atomic<bool> capturing_{false};
  std::vector<std::string> lines_;
};

/// Waits until `status` shows a running job (the executor picked it up).
void wait_until_running(WireClient& client, const std::string& id) {
  for (int i = 0; i < 200; ++i) {
    json running = client.request(message("status", "st-" + std::to_string(i)))["data"]["running"];
    for (const auto& job : running)
      if (job["request_id"] == id) return;
    std::this_thread::sleep_for(10ms);
  }
  FAIL() << id << " never started";
}

/// Waits until `status` shows `id` in the queue (its line was read on another connection).
void wait_until_queued(WireClient& client, const std::string& id) {
  for (int i = 0; i < 200; ++i) {
    const json queue = client.request(message("status", "sq-" + std::to_string(i)))["data"]["queue"];
    for (const char* level : {"high", "normal", "low"})
      for (const auto& queued : queue[level])
        if (queued == id) return;
    std::this_thread::sleep_for(10ms);
  }
  FAIL() << id << " never queued";
}

TEST(SocketJobs, CancelQueuedAndRunningJobs) {
  HostFixture fixture;
  auto owner = fixture.client();
  auto control = fixture.client();
  owner->send(generation("long", 200, 20));  // ~4 s unless cancelled
  wait_until_running(*control, "long");
  owner->send(generation("waiting", 2, 1));
  wait_until_queued(*control, "waiting");  // the two connections race otherwise (seen under load)

  json queued = control->request(message("cancel", "c1", {{"request_id", "waiting"}}));
  ASSERT_TRUE(queued["success"].get<bool>()) << queued.dump();
  EXPECT_EQ(queued["data"]["state"], "queued");
  json running = control->request(message("cancel", "c2", {{"request_id", "long"}}));
  ASSERT_TRUE(running["success"].get<bool>()) << running.dump();
  EXPECT_EQ(running["data"]["state"], "running");

  auto started = std::chrono::steady_clock::now();
  std::map<std::string, json> answers;
  while (answers.size() < 2) {
    json line = owner->next();
    if (line.is_null()) break;
    if (line["message_type"] == "response") answers[line["request_id"]] = line;
  }
  EXPECT_EQ(answers["waiting"]["error_code"], "CANCELLED");
  EXPECT_EQ(answers["long"]["error_code"], "CANCELLED");
  EXPECT_LT(std::chrono::steady_clock::now() - started, 2s);  // stopped between steps, not at the end
}

TEST(SocketJobs, TimeoutCoversQueueWaitAndRun) {
  HostFixture fixture;
  auto client = fixture.client();
  // Running: 100 steps of 10 ms against a 0.2 s timeout.
  json slow = client->request(generation("slow", 100, 10, {{"metadata", {{"timeout", 0.2}}}}));
  EXPECT_EQ(slow["error_code"], "TIMEOUT") << slow.dump();
  EXPECT_EQ(slow["field"], "data.metadata.timeout");
  // Queued: stuck behind a long job, it times out without ever running.
  client->send(generation("blocker", 60, 10));
  client->send(generation("behind", 1, 1, {{"metadata", {{"timeout", 0.1}}}}));
  auto lines = client->until_response("behind");
  EXPECT_EQ(lines.back()["error_code"], "TIMEOUT") << lines.back().dump();
  EXPECT_NE(lines.back()["error"].get<std::string>().find("queued"), std::string::npos);
  EXPECT_TRUE(client->until_response("blocker").back()["success"].get<bool>());
}

TEST(SocketJobs, PriorityOrderFifoWithinLevel) {
  HostFixture fixture;
  auto client = fixture.client();
  client->send(generation("blocker", 100, 10));
  wait_until_running(*fixture.client(), "blocker");
  const std::vector<std::pair<std::string, std::string>> jobs = {
      {"low1", "low"}, {"normal1", "normal"}, {"high1", "high"}, {"normal2", "normal"}, {"high2", "high"}};
  for (const auto& [id, priority] : jobs)
    client->send(generation(id, 1, 1, {{"metadata", {{"priority", priority}}}}));
  std::vector<std::string> order;
  while (order.size() < 6) {
    json line = client->next();
    if (line.is_null()) break;
    if (line["message_type"] == "response") order.push_back(line["request_id"]);
  }
  EXPECT_EQ(order, (std::vector<std::string>{"blocker", "high1", "high2", "normal1", "normal2", "low1"}));
}

TEST(SocketJobs, QueueFullAndDuplicateIds) {
  HostFixture fixture(json{{"queue", {{"max_pending", 1}}}});
  auto client = fixture.client();
  client->send(generation("running", 100, 10));
  wait_until_running(*fixture.client(), "running");
  client->send(generation("queued", 1, 1));
  json full = client->request(generation("third", 1, 1));
  EXPECT_EQ(full["error_code"], "QUEUE_FULL") << full.dump();
  json duplicate = client->request(generation("queued", 1, 1));
  EXPECT_EQ(duplicate["error_code"], "VALIDATION_ERROR");
  EXPECT_EQ(duplicate["field"], "request_id");
  EXPECT_TRUE(client->until_response("queued").back()["success"].get<bool>());
}

TEST(SocketJobs, DisconnectMidJobCancelsRunningAndDropsQueued) {
  HostFixture fixture;
  auto watcher = fixture.client();
  {
    auto leaver = fixture.client();
    leaver->send(generation("abandoned", 150, 30));  // 4.5 s if nobody stops it
    wait_until_running(*watcher, "abandoned");
    leaver->send(generation("orphan", 1, 1));
    for (int i = 0; i < 100 && watcher->request(message("status", "q" + std::to_string(i)))["data"]["queue"]["depth"] != 1; ++i)
      std::this_thread::sleep_for(5ms);
  }  // the client goes away here
  auto started = std::chrono::steady_clock::now();
  json status;
  for (int i = 0; i < 200; ++i) {
    status = watcher->request(message("status", "s" + std::to_string(i)))["data"];
    if (status["running"].empty() && status["queue"]["depth"] == 0) break;
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(status["running"].empty()) << status.dump();
  EXPECT_EQ(status["queue"]["depth"], 0) << status.dump();
  EXPECT_LT(std::chrono::steady_clock::now() - started, 2s);
  // The host keeps serving others.
  EXPECT_TRUE(watcher->request(generation("next", 1, 1))["success"].get<bool>());
}

TEST(SocketJobs, ShutdownAnswersQueuedWorkAndRefusesNewWork) {
  auto fixture = std::make_unique<HostFixture>();
  auto client = fixture->client();
  client->send(generation("finishing", 150, 5));  // 0.75 s: time to queue one more job
  wait_until_running(*fixture->client(), "finishing");
  client->send(generation("left-behind", 1, 1));
  json bye = fixture->client()->request(message("shutdown", "bye"));
  ASSERT_TRUE(bye["success"].get<bool>());
  std::map<std::string, json> answers;
  while (answers.size() < 2) {
    json line = client->next();
    if (line.is_null()) break;
    if (line["message_type"] == "response") answers[line["request_id"]] = line;
  }
  EXPECT_EQ(answers["left-behind"]["error_code"], "SHUTTING_DOWN");
  EXPECT_TRUE(answers["finishing"]["success"].get<bool>()) << answers["finishing"].dump();  // within the grace
  fixture.reset();
}

// Every line logged while a job is handled (host, queue, runner, planner, the plugin's own
// context.log) names its request id, for a job that succeeds and for one that fails.
TEST(SocketJobs, EveryJobLogLineCarriesTheRequestId) {
  auto sink = std::make_shared<CaptureSink>();
  std::vector<std::shared_ptr<spdlog::logger>> loggers;
  for (const char* component : {"host", "protocol", "runtime", "job", "plugins", "models"})
    loggers.push_back(host::component_logger(component));
  for (const auto& logger : loggers) logger->sinks().push_back(sink);  // no host thread runs yet
  {
    HostFixture fixture(json{{"log_level", "debug"}});
    auto client = fixture.client();
    ASSERT_TRUE(client->request(message("ping", "before"))["success"].get<bool>());  // connection logged
    // A first job makes sure the executor thread has started (and logged that) before capturing.
    ASSERT_TRUE(client->request(generation("warm-up", 1, 1))["success"].get<bool>());
    const std::pair<std::string, json> jobs[] = {
        {"log-ok-1", json::object()}, {"log-fail-2", {{"test", {{"throw", "error"}}}}}};
    for (const auto& [id, extra] : jobs) {
      sink->capture(true);
      json response = client->request(generation(id, 2, 1, extra));
      sink->capture(false);
      EXPECT_EQ(response["success"].get<bool>(), extra.empty()) << response.dump();
      const auto lines = sink->lines();
      sink->clear();
      bool plugin_line = false;
      bool plan_line = false;
      for (const auto& line : lines) {
        if (line.find("[" + id + "]") == std::string::npos) continue;
        plugin_line = plugin_line || line.find("test_denoise: 2 steps") != std::string::npos;
        plan_line = plan_line || line.find("plan:") != std::string::npos;
      }
      // In the order things happened: queued before started (the queued line is written under
      // the queue's lock, before an executor can take the job).
      std::size_t queued_at = lines.size(), started_at = lines.size();
      for (std::size_t i = 0; i < lines.size(); ++i) {
        if (queued_at == lines.size() && lines[i].find("queued generation") != std::string::npos) queued_at = i;
        if (started_at == lines.size() && lines[i].find("started generation") != std::string::npos) started_at = i;
      }
      EXPECT_LT(queued_at, started_at) << "queued logged after started (or missing) for " << id;
      EXPECT_TRUE(plugin_line) << "no plugin log line with the id " << id;
      EXPECT_TRUE(plan_line) << "no plan line with the id " << id;
      for (const auto& line : lines)
        EXPECT_NE(line.find("[" + id + "]"), std::string::npos) << "a line logged during job " << id << ": " << line;
    }
  }
  for (const auto& logger : loggers) {
    auto& sinks = logger->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink), sinks.end());
  }
  host::set_log_level("warn");
}


/// True when `line` is what the escaping logger writes: printable, valid UTF-8, nothing left to
/// escape but the backslashes its own escapes contain.
bool is_safe_log_line(const std::string& line) {
  for (unsigned char c : line)
    if (c < 0x20 || c == 0x7F) return false;
  std::string doubled;
  for (char c : line) {
    doubled += c;
    if (c == '\\') doubled += '\\';
  }
  return host::escape_for_log(line) == doubled;
}

// Issue 14, item 6: client text (request ids with newlines and escapes, invalid UTF-8 that the
// parser quotes in its error, unknown message types) reaches the log escaped: every record is
// one line of valid, printable UTF-8, and nothing a client sends can forge another record.
TEST(SocketJobs, ClientTextIsEscapedInTheLog) {
  auto sink = std::make_shared<CaptureSink>();
  std::vector<std::shared_ptr<spdlog::logger>> loggers;
  for (const char* component : {"host", "protocol", "runtime", "job", "plugins", "models", "transport"})
    loggers.push_back(host::component_logger(component));
  for (const auto& logger : loggers) logger->sinks().push_back(sink);
  {
    HostFixture fixture(json{{"log_level", "debug"}});
    auto client = fixture.client();
    sink->capture(true);
    // JSON escapes: a newline, a NUL and an ANSI colour sequence inside the request id.
    const std::string forged = R"(evil\n2026-01-01T00:00:00.000 info  [host] FORGED\u0000\u001b[31m)";
    client->send_raw(R"({"message_type":"inference_request","request_id":")" + forged +
                     R"(","data":{"prompt":"p","dimensions":{"width":8,"height":8},)"
                     R"("hyperparameters":{"num_inference_steps":1},"test":{"throw":"error"}}})" "\n");
    const std::string decoded = json::parse("\"" + forged + "\"").get<std::string>();
    const json answer = client->until_response(decoded).back();
    EXPECT_EQ(answer["error_code"], "PLUGIN_ERROR") << answer.dump();
    client->send_raw("{\"message_type\":\"ping\",\"request_id\":\"bad\xff\xfeutf8\"}\n");
    EXPECT_EQ(client->next()["error_code"], "MALFORMED_JSON");
    client->send_raw(R"({"message_type":"no\nsuch","request_id":"t\r"})" "\n");
    EXPECT_EQ(client->next()["error_code"], "UNKNOWN_MESSAGE_TYPE");
    ASSERT_TRUE(client->request(message("ping", "after"))["success"].get<bool>());
    sink->capture(false);
  }
  const auto lines = sink->lines();
  EXPECT_FALSE(lines.empty());
  bool saw_escaped_id = false;
  for (const auto& line : lines) {
    EXPECT_TRUE(is_safe_log_line(line)) << "raw client text in the log: " << host::escape_for_log(line);
    saw_escaped_id = saw_escaped_id || line.find(R"([evil\n2026)") != std::string::npos;
  }
  EXPECT_TRUE(saw_escaped_id) << "no log line names the job by its (escaped) id";
  for (const auto& logger : loggers) {
    auto& sinks = logger->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink), sinks.end());
  }
  host::set_log_level("warn");
}

}  // namespace
}  // namespace sdxlhost::test_support
