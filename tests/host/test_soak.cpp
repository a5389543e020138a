// Soak (ctest labels host + slow): several clients send mixed requests for a bounded time
// (SDXLHOST_SOAK_SECONDS, 20 by default): pings, dry runs, tiny generations (test_generate),
// generations they cancel, status, malformed lines, and clients that disconnect mid-job. Every
// request of a client that stays connected is answered exactly once; afterwards the host's open
// file descriptors and resident memory are back to their start values.
#include <dirent.h>

#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "host/common/memory.hpp"
#include "common/host_fixture.hpp"

namespace sdxlhost::test_support {
namespace {

int open_fds() {
  int count = 0;
  if (DIR* dir = ::opendir("/proc/self/fd")) {
    while (::readdir(dir)) ++count;
    ::closedir(dir);
  }
  return count - 3;  // ".", ".." and the directory itself
}

double soak_seconds() {
  const char* env = std::getenv("SDXLHOST_SOAK_SECONDS");
  return env ? std::atof(env) : 20.0;
}

struct Tally {
  std::mutex mutex;
  std::map<std::string, int> answers;  ///< request id -> responses seen
  std::map<std::string, int> kinds;    ///< what was sent
  std::atomic<int> sent{0};
  std::atomic<int> disconnects{0};
  std::string failure;
};

/// One client: sends a random mix, reads every line, counts responses per id.
void client_loop(const HostFixture& fixture, int index, double seconds, Tally& tally) {
  std::mt19937 random(1234 + index);
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  auto client = fixture.client();
  int n = 0;
  auto fail = [&](const std::string& why) {
    std::lock_guard<std::mutex> lock(tally.mutex);
    if (tally.failure.empty()) tally.failure = why;
  };
  auto count = [&](const std::string& kind) {
    std::lock_guard<std::mutex> lock(tally.mutex);
    ++tally.kinds[kind];
  };
  while (std::chrono::steady_clock::now() < end) {
    const std::string id = "c" + std::to_string(index) + "-" + std::to_string(n++);
    const int pick = static_cast<int>(random() % 100);
    json message;
    std::string kind;
    if (pick < 25) {
      kind = "ping";
      message = {{"message_type", "ping"}, {"request_id", id}};
    } else if (pick < 40) {
      kind = "dry_run";
      message = generation(id, 3, 0, {{"dry_run", true}});
    } else if (pick < 70) {
      kind = "generation";
      message = generation(id, 2, 1, {{"output", {{"save_path", "soak/" + id + ".png"}}}});
    } else if (pick < 80) {
      kind = "cancel";
      message = generation(id, 50, 5);
    } else if (pick < 88) {
      kind = "status";
      message = {{"message_type", "status"}, {"request_id", id}};
    } else if (pick < 94) {
      kind = "malformed";
    } else {
      kind = "disconnect";
    }
    count(kind);
    if (kind == "disconnect") {
      // A second connection that asks for a long job and goes away: its job is dropped.
      auto quitter = fixture.client();
      quitter->send(generation(id, 200, 5));
      std::this_thread::sleep_for(std::chrono::milliseconds(random() % 20));
      quitter.reset();
      ++tally.disconnects;
      continue;
    }
    ++tally.sent;
    if (kind == "malformed") {
      client->send_raw("{\"message_type\": \"ping\", \"request_id\": \"" + id + "\", \"data\": {\"x\": 1e400}}\n");
    } else {
      client->send(message);
    }
    if (kind == "cancel") {
      std::this_thread::sleep_for(std::chrono::milliseconds(random() % 30));
      client->send({{"message_type", "cancel"}, {"request_id", id + "-x"}, {"data", {{"request_id", id}}}});
      ++tally.sent;
    }
    // Read until every id sent in this round is answered (progress lines in between).
    std::set<std::string> waiting{id};
    if (kind == "cancel") waiting.insert(id + "-x");
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (!waiting.empty() && std::chrono::steady_clock::now() < give_up) {
      auto line = client->raw().read_line(std::chrono::seconds(30));
      if (!line) break;
      const json reply = json::parse(*line, nullptr, false);
      if (reply.is_discarded()) return fail("not JSON: " + *line);
      if (reply.value("message_type", "") != "response") continue;
      const std::string rid = reply["request_id"].is_string() ? reply["request_id"].get<std::string>() : "(null)";
      {
        std::lock_guard<std::mutex> lock(tally.mutex);
        ++tally.answers[rid];
      }
      waiting.erase(rid);
      const bool ok = reply.value("success", false);
      const std::string code = reply.value("error_code", "");
      if (kind == "malformed" && code != "MALFORMED_JSON") fail("malformed line answered " + reply.dump());
      if ((kind == "ping" || kind == "dry_run" || kind == "generation" || kind == "status") && !ok)
        fail(kind + " failed: " + reply.dump());
      if (kind == "cancel" && rid == id && !ok && code != "CANCELLED") fail("cancelled job answered " + reply.dump());
    }
    if (!waiting.empty()) return fail("no answer for " + *waiting.begin());
  }
}

TEST(Soak, MixedClientsEveryRequestAnsweredOnceAndResourcesComeBack) {
  HostFixture fixture(json{{"queue", {{"max_pending", 256}}}});
  {  // warm up: first connection, first job, first log lines allocate once
    auto client = fixture.client();
    ASSERT_TRUE(client->request(generation("warm", 2, 1, {{"output", {{"save_path", "warm.png"}}}}))["success"].get<bool>());
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  host::release_free_memory();
  const int fds_before = open_fds();
  const std::size_t rss_before = host::resident_bytes();

  const double seconds = soak_seconds();
  constexpr int kClients = 6;
  Tally tally;
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i)
    clients.emplace_back([&, i] { client_loop(fixture, i, seconds, tally); });
  for (auto& t : clients) t.join();

  EXPECT_EQ(tally.failure, "");
  int answered = 0;
  for (const auto& [id, times] : tally.answers) {
    EXPECT_EQ(times, 1) << id << " answered " << times << " times";
    answered += times;
  }
  EXPECT_EQ(answered, tally.sent.load());
  EXPECT_GT(tally.kinds["generation"], 0);
  EXPECT_GT(tally.kinds["cancel"], 0);

  // Idle again: no client, no job. Open fds and memory come back.
  auto probe = fixture.client();
  for (int i = 0; i < 200; ++i) {
    const json status = probe->request({{"message_type", "status"}, {"request_id", "idle-" + std::to_string(i)}});
    if (status["data"]["running"].empty() && status["data"]["queue"]["depth"] == 0 && status["data"]["clients"] == 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  probe.reset();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  host::release_free_memory();
  const int fds_after = open_fds();
  const std::size_t rss_after = host::resident_bytes();
  EXPECT_LE(fds_after, fds_before) << "file descriptors leaked";
  EXPECT_LT(rss_after, rss_before + (16u << 20)) << "RSS grew from " << (rss_before >> 20) << " to "
                                                 << (rss_after >> 20) << " MiB";
  std::printf("soak: %d clients, %.0f s, %d requests answered once, %d disconnects; kinds:", kClients, seconds,
              answered, tally.disconnects.load());
  for (const auto& [kind, n] : tally.kinds) std::printf(" %s=%d", kind.c_str(), n);
  std::printf("; fds %d -> %d; RSS %zu -> %zu MiB\n", fds_before, fds_after, rss_before >> 20, rss_after >> 20);
}

}  // namespace
}  // namespace sdxlhost::test_support
