// The host over a real Unix socket: every message type, every error code the host produces,
// bad lines of every kind, concurrent clients, socket file handling, plugins, reload_config.
#include <dlfcn.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <fstream>
#include <future>

#include <gtest/gtest.h>

#include "common/plugin_mapping.hpp"
#include "common/host_fixture.hpp"

namespace sdxlhost::test_support {
namespace {

json message(const std::string& type, const std::string& id, json data = json::object()) {
  return {{"message_type", type}, {"request_id", id}, {"data", data}};
}

void expect_error(const json& response, const std::string& code, const std::string& field = "") {
  EXPECT_EQ(response.value("message_type", ""), "response") << response.dump();
  EXPECT_EQ(response.value("success", true), false) << response.dump();
  EXPECT_EQ(response.value("error_code", ""), code) << response.dump();
  EXPECT_FALSE(response.value("error", "").empty());
  if (!field.empty()) EXPECT_EQ(response.value("field", json()).dump(), json(field).dump()) << response.dump();
}

const json* find_plugin(const json& plugins, const std::string& name) {
  for (const auto& plugin : plugins)
    if (plugin.value("name", "") == name) return &plugin;
  return nullptr;
}

/// True when `library` is mapped into this process (dlopen without loading it).
/// True when the plugin `library` is mapped (as its private copy, see common/plugin_mapping.hpp).
bool is_mapped(const std::filesystem::path& library) { return test_support::is_plugin_mapped(library); }

TEST(SocketServer, AModelPreloadedByAPluginOutlivesThatPluginBeingDisabled) {
  const std::filesystem::path library = std::filesystem::path(SDXLHOST_TEST_PLUGIN_DIR) / "test_generate.so";
  HostFixture fixture;
  auto client = fixture.client();
  json loaded = client->request(message("load_model", "m", {{"name", "tiny"}}));
  ASSERT_TRUE(loaded["success"].get<bool>()) << loaded.dump();  // test_generate's object is cached

  fixture.write_config({{"plugins", {{"enabled", {{"test_generate", false}}}}}});
  json reloaded = client->request(message("reload_config", "r"));
  ASSERT_TRUE(reloaded["success"].get<bool>()) << reloaded.dump();
  EXPECT_TRUE(is_mapped(library)) << "the cached model's code must stay mapped while it is cached";

  json unloaded = client->request(message("unload_model", "u", {{"name", "tiny"}}));  // runs its destructor
  ASSERT_TRUE(unloaded["success"].get<bool>()) << unloaded.dump();
  EXPECT_TRUE(unloaded["data"]["unloaded"].get<bool>());
  EXPECT_EQ(unloaded["data"]["cache"]["loaded_bytes"], 0) << unloaded.dump();
  EXPECT_FALSE(is_mapped(library)) << "nothing refers to the disabled plugin any more";
  EXPECT_TRUE(client->request(message("ping", "p"))["success"].get<bool>());
}

TEST(SocketServer, TopLevelDeviceAndDtypeReachEveryPluginConfigNormalized) {
  const std::filesystem::path dir = make_temp_dir("config_echo");
  const std::filesystem::path record = dir / "config.json";
  {
    HostFixture fixture({{"dtype", "bfloat16"},
                         {"plugins", {{"config", {{"test_config_echo", {{"record_to", record.string()}}}}}}}});
    auto client = fixture.client();
    json capabilities = client->request(message("capabilities", "c"));
    EXPECT_EQ(capabilities["data"].value("dtype", ""), "bf16") << capabilities.dump();
  }
  std::ifstream in(record);
  const json received = json::parse(in, nullptr, /*allow_exceptions=*/false);
  std::filesystem::remove_all(dir);
  EXPECT_EQ(received.value("device", ""), "cpu") << received.dump();
  EXPECT_EQ(received.value("dtype", ""), "bf16") << received.dump();
}

TEST(SocketServer, ModelLoadErrorFromTheRealSdxlPlugin) {
  const std::filesystem::path plugin = std::filesystem::path(SDXLHOST_PLUGIN_DIR) / "sdxl.so";
  ASSERT_TRUE(std::filesystem::exists(plugin)) << plugin << " is not built";
  HostFixture fixture(json{{"plugins", {{"dir", SDXLHOST_PLUGIN_DIR},
                                        {"enabled", {{"sdxl", true}, {"schedulers", true}}},
                                        {"enable_unlisted", false}}}});
  std::ofstream(fixture.dir() / "models" / "checkpoints" / "corrupt.safetensors", std::ios::binary)
      << std::string(16, '\xff');  // a header length far beyond any limit
  auto client = fixture.client();
  expect_error(client->request(message("load_model", "l", {{"name", "corrupt"}})), "MODEL_LOAD_ERROR");
  json request = generation("g", 2, 1, {{"models", {{"base", "corrupt"}}}, {"dimensions", {{"width", 64}, {"height", 64}}}});
  expect_error(client->request(request), "MODEL_LOAD_ERROR");
}

TEST(SocketServer, UnknownSchedulerOrBadSchedulerOptionIsRefusedAtPlanTime) {
  const std::filesystem::path plugin = std::filesystem::path(SDXLHOST_PLUGIN_DIR) / "schedulers.so";
  ASSERT_TRUE(std::filesystem::exists(plugin)) << plugin << " is not built";
  HostFixture fixture(json{{"plugins", {{"dir", SDXLHOST_PLUGIN_DIR},
                                        {"enabled", {{"sdxl", true}, {"schedulers", true}}},
                                        {"enable_unlisted", false}}}});
  auto client = fixture.client();
  json base = {{"models", {{"base", "tiny"}}}, {"dimensions", {{"width", 64}, {"height", 64}}}};
  auto with = [&](json extra) {
    json data = base;
    data.update(extra);
    return data;
  };
  json unknown = client->request(generation("s1", 2, 1, with({{"dry_run", true}, {"scheduler", "NoSuchScheduler"}})));
  expect_error(unknown, "VALIDATION_ERROR", "data.scheduler");
  EXPECT_NE(unknown.value("error", "").find("EulerDiscreteScheduler"), std::string::npos) << unknown.dump();
  // Refused before queueing too (no job runs, no model is read).
  expect_error(client->request(generation("s2", 2, 1, with({{"scheduler", "NoSuchScheduler"}}))), "VALIDATION_ERROR",
               "data.scheduler");
  expect_error(client->request(generation("s3", 2, 1, with({{"dry_run", true},
                                                            {"scheduler", "EulerDiscreteScheduler"},
                                                            {"scheduler_options", {{"timestep_spacing", "sideways"}}}}))),
               "VALIDATION_ERROR", "data.scheduler_options.timestep_spacing");
  json good = client->request(generation("s4", 2, 1, with({{"dry_run", true},
                                                          {"scheduler", "EulerDiscreteScheduler"},
                                                          {"scheduler_options", {{"timestep_spacing", "trailing"}}}})));
  EXPECT_TRUE(good["success"].get<bool>()) << good.dump();
}

TEST(SocketServer, SchedulerNamesAreNotCheckedWhenNoPluginRegistersSchedulers) {
  HostFixture fixture;  // test_generate records the name without a scheduler registry
  auto client = fixture.client();
  json dry = client->request(generation("d", 2, 1, {{"dry_run", true}, {"scheduler", "AnyName"}}));
  ASSERT_TRUE(dry["success"].get<bool>()) << dry.dump();
  EXPECT_EQ(dry["data"]["normalized_request"]["scheduler"], "AnyName");
}

TEST(SocketServer, SimpleMessageTypes) {
  HostFixture fixture;
  auto client = fixture.client();
  json pong = client->request(message("ping", "p1"));
  EXPECT_TRUE(pong["success"].get<bool>());
  EXPECT_TRUE(pong["data"]["pong"].get<bool>());

  json caps = client->request(message("capabilities", "c1"))["data"];
  EXPECT_NE(find_plugin(caps["plugins"], "test_generate"), nullptr);
  EXPECT_EQ(caps["limits"]["max_message_bytes"], 64 * 1024 * 1024);
  EXPECT_EQ(caps["stages"].size(), 3u);  // test_prepare, test_denoise, test_upscale
  EXPECT_NE(std::find(caps["message_types"].begin(), caps["message_types"].end(), "enhanced_inference_request"),
            caps["message_types"].end());

  json status = client->request(message("status", "s1"))["data"];
  EXPECT_EQ(status["queue"]["depth"], 0);
  EXPECT_GT(status["memory"]["rss_bytes"].get<std::uint64_t>(), 0u);
  EXPECT_TRUE(status["running"].empty());

  json models = client->request(message("list_models", "l1"));
  ASSERT_TRUE(models["success"].get<bool>()) << models.dump();
  EXPECT_NE(models["data"].dump().find("tiny"), std::string::npos) << models.dump();

  json unload = client->request(message("unload_model", "u1", {{"kind", "checkpoints"}, {"name", "tiny"}}));
  ASSERT_TRUE(unload["success"].get<bool>()) << unload.dump();
  EXPECT_FALSE(unload["data"]["unloaded"].get<bool>());
  // test_generate preloads checkpoints (it caches the file's bytes); nothing preloads LoRAs.
  json loaded = client->request(message("load_model", "m0", {{"name", "tiny"}}));
  ASSERT_TRUE(loaded["success"].get<bool>()) << loaded.dump();
  EXPECT_TRUE(loaded["data"]["loaded"].get<bool>());
  json unloaded = client->request(message("unload_model", "u2", {{"kind", "checkpoints"}, {"name", "tiny"}}));
  EXPECT_TRUE(unloaded["data"]["unloaded"].get<bool>()) << unloaded.dump();
  std::filesystem::create_directories(fixture.dir() / "models" / "loras");
  std::ofstream(fixture.dir() / "models" / "loras" / "style.safetensors") << "x";
  expect_error(client->request(message("load_model", "m1", {{"kind", "loras"}, {"name", "style"}})),
               "FEATURE_DISABLED", "data.kind");
  expect_error(client->request(message("load_model", "m2", {{"kind", "weights"}, {"name", "tiny"}})),
               "VALIDATION_ERROR", "data.kind");
  expect_error(client->request(message("load_model", "m3", {{"name", "nope"}})), "MODEL_NOT_FOUND");

  // Legacy `action`, generated request ids, unknown fields as warnings.
  client->send({{"action", "ping"}, {"colour", "red"}});
  json legacy = client->next();
  EXPECT_TRUE(legacy["success"].get<bool>());
  EXPECT_FALSE(legacy["request_id"].get<std::string>().empty());
  ASSERT_EQ(legacy["warnings"].size(), 1u);
}

/// Polls `status` until it reports `clients` connected clients (disconnects are seen asynchronously).
bool status_reports_clients(WireClient& client, int clients) {
  for (int attempt = 0; attempt < 200; ++attempt) {
    json status = client.request(message("status", "st" + std::to_string(attempt)));
    if (status["data"]["clients"] == clients) return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

TEST(SocketServer, StatusCountsClientsAndAClientThatNeverReadsIsDisconnected) {
  HostFixture fixture(json{{"limits", {{"max_client_backlog_bytes", 64 * 1024}}}});
  auto watcher = fixture.client();
  EXPECT_TRUE(status_reports_clients(*watcher, 1));
  {
    auto second = fixture.client();
    EXPECT_TRUE(status_reports_clients(*watcher, 2));
  }
  EXPECT_TRUE(status_reports_clients(*watcher, 1));

  // A client that sends many requests and reads none of the answers: once the socket buffer is
  // full, answers queue in the host until limits.max_client_backlog_bytes, then it is dropped.
  auto silent = fixture.client();
  constexpr int kPings = 40000;  // ~5 MB of answers, far beyond the socket buffer + 64 KiB
  std::string lines;
  for (int i = 0; i < kPings; ++i) lines += message("ping", "p" + std::to_string(i)).dump() + "\n";
  silent->raw().write(lines);
  int answers = 0;
  while (silent->raw().read_line(5s)) ++answers;
  EXPECT_TRUE(silent->raw().closed()) << "the host should have closed the connection";
  EXPECT_LT(answers, kPings);
  EXPECT_TRUE(status_reports_clients(*watcher, 1));
  EXPECT_TRUE(watcher->request(message("ping", "still-serving"))["success"].get<bool>());
}

TEST(SocketServer, GenerationRoundTripWithProgressAndBatchSeeds) {
  HostFixture fixture;
  auto client = fixture.client();
  json request = generation("g1", 4, 1, {{"batch", {{"size", 2}}}, {"output", {{"save_path", "run/img.png"}}},
                                         {"mystery", 1}});
  client->send(request);
  auto lines = client->until_response("g1");
  ASSERT_GE(lines.size(), 2u);
  int progress = 0;
  for (std::size_t i = 0; i + 1 < lines.size(); ++i) {
    EXPECT_EQ(lines[i]["message_type"], "progress");
    EXPECT_EQ(lines[i]["request_id"], "g1");
    for (const char* key : {"stage", "step", "total_steps", "elapsed_s"}) EXPECT_TRUE(lines[i]["data"].contains(key));
    ++progress;
  }
  EXPECT_GE(progress, 1);
  const json& response = lines.back();
  ASSERT_TRUE(response["success"].get<bool>()) << response.dump();
  const json& data = response["data"];
  EXPECT_EQ(data["stages"], json({"test_prepare", "test_denoise"}));
  ASSERT_EQ(data["generated_images"].size(), 2u);
  for (int i = 0; i < 2; ++i) {
    const json& image = data["generated_images"][i];
    EXPECT_TRUE(std::filesystem::exists(image["image_path"].get<std::string>())) << image.dump();
    EXPECT_EQ(image["metadata"]["seed"], 7 + i);
  }
  EXPECT_TRUE(data["processing_metrics"].contains("total_time"));
  // host memory reported on its own (device_memory_used is the device's: RSS on a CPU host)
  EXPECT_GT(data["processing_metrics"].value("host_memory_used", 0.0), 0.0);
  EXPECT_GE(data["processing_metrics"].value("host_peak_memory_bytes", 0.0),
            data["processing_metrics"].value("host_memory_used", 0.0));
  EXPECT_NE(response["warnings"].dump().find("data.mystery"), std::string::npos);

  // enhanced_inference_request alias + legacy flat fields + base64 when no save path.
  json legacy = {{"message_type", "enhanced_inference_request"}, {"request_id", "g2"},
                 {"data", {{"prompt", "x"}, {"width", 8}, {"height", 8}, {"num_inference_steps", 1}, {"seed", 3}}}};
  json answer = client->request(legacy);
  ASSERT_TRUE(answer["success"].get<bool>()) << answer.dump();
  EXPECT_FALSE(answer["data"]["generated_images"][0].value("image_data", "").empty());
  EXPECT_EQ(answer["data"]["generated_images"][0]["metadata"]["seed"], 3);
}

TEST(SocketServer, StrengthWithoutInitImageGetsAWarning) {
  HostFixture fixture;
  auto client = fixture.client();
  json with_strength = client->request(generation("st1", 1, 1, {{"hyperparameters", {{"strength", 0.4}}}}));
  ASSERT_TRUE(with_strength["success"].get<bool>()) << with_strength.dump();
  EXPECT_NE(with_strength["warnings"].dump().find("data.hyperparameters.strength"), std::string::npos)
      << with_strength.dump();
  json without = client->request(generation("st2", 1, 1));
  ASSERT_TRUE(without["success"].get<bool>()) << without.dump();
  EXPECT_EQ(without["warnings"].dump().find("strength"), std::string::npos) << without.dump();
}

TEST(SocketServer, FieldsUnderAnEnabledPluginsNameAreNotWarnedAbout) {
  HostFixture fixture;
  auto client = fixture.client();
  json extra = {{"test_generate", {{"anything", 1}}}, {"test_bad_abi", {{"x", 1}}}};
  json response = client->request(generation("ps1", 1, 1, extra));
  ASSERT_TRUE(response["success"].get<bool>()) << response.dump();
  const std::string warnings = response["warnings"].dump();
  EXPECT_EQ(warnings.find("data.test_generate"), std::string::npos) << warnings;
  EXPECT_NE(warnings.find("data.test_bad_abi"), std::string::npos) << "not a loaded plugin: " << warnings;

  fixture.write_config({{"plugins", {{"enabled", {{"test_upscale", false}}}}}});
  ASSERT_TRUE(client->request(message("reload_config", "r"))["success"].get<bool>());
  json disabled = client->request(generation("ps2", 1, 1, {{"test_upscale", {{"x", 1}}}}));
  EXPECT_NE(disabled["warnings"].dump().find("data.test_upscale"), std::string::npos) << disabled.dump();
}

TEST(SocketServer, EveryRequestErrorCode) {
  HostFixture fixture;
  auto client = fixture.client();
  expect_error(client->request(generation("v1", 3, 1, {{"dimensions", {{"width", 1001}}}})), "VALIDATION_ERROR",
               "data.dimensions.width");
  expect_error(client->request(message("teleport", "u1")), "UNKNOWN_MESSAGE_TYPE", "message_type");
  expect_error(client->request(generation("f1", 3, 1, {{"lora", {{"enabled", true}, {"models", {{{"name", "tiny"}}}}}}})),
               "MODEL_NOT_FOUND");
  std::filesystem::create_directories(fixture.dir() / "models" / "loras");
  std::ofstream(fixture.dir() / "models" / "loras" / "style.safetensors") << "x";
  json disabled = client->request(generation("f2", 3, 1, {{"lora", {{"models", {{{"name", "style"}}}}}}}));
  expect_error(disabled, "FEATURE_DISABLED");
  EXPECT_NE(disabled["error"].get<std::string>().find("plugins.enabled.lora"), std::string::npos) << disabled.dump();
  expect_error(client->request(generation("m1", 3, 1, {{"models", {{"base", "missing"}}}})), "MODEL_NOT_FOUND",
               "data.models.base");
  expect_error(client->request(generation("e1", 3, 1, {{"test", {{"throw", "error"}}}})), "PLUGIN_ERROR");
  expect_error(client->request(generation("e2", 3, 1, {{"test", {{"throw", "std"}}}})), "INTERNAL_ERROR");
  expect_error(client->request(generation("e3", 3, 1, {{"test", {{"throw", "int"}}}})), "INTERNAL_ERROR");
  // A libtorch error reaches the client as its message alone: no backtrace, no source path.
  json torch_error = client->request(generation("e4", 3, 1, {{"test", {{"throw", "torch"}}}}));
  expect_error(torch_error, "INTERNAL_ERROR");
  const std::string text = torch_error.value("error", "");
  EXPECT_NE(text.find("a libtorch check failed as requested"), std::string::npos) << text;
  for (const char* leak : {"frame #", "Exception raised from", "test_generate.cpp", "/work/", ".cpp:"})
    EXPECT_EQ(text.find(leak), std::string::npos) << "'" << leak << "' reached the client: " << text;
  expect_error(client->request(message("cancel", "n1", {{"request_id", "nobody"}})), "NOT_FOUND", "data.request_id");
  expect_error(client->request(message("cancel", "n2")), "VALIDATION_ERROR", "data.request_id");
  // Output that cannot be written: output_root is a file.
  std::ofstream(fixture.dir() / "out") << "a file where the folder should be";
  expect_error(client->request(generation("o1", 1, 1, {{"output", {{"save_path", "a.png"}}}})), "OUTPUT_ERROR");
  // The connection is still fine after all of that.
  EXPECT_TRUE(client->request(message("ping", "p"))["success"].get<bool>());
}

TEST(SocketServer, MalformedBinaryTruncatedDeepAndOversizedLines) {
  HostFixture fixture(json{{"limits", {{"max_message_bytes", 4096}, {"max_json_depth", 16}}}});
  auto client = fixture.client();
  const std::vector<std::string> bad = {
      "{this is not json}\n",
      std::string("\x00\x01\x02\xff\xfe binary\n", 15),
      "{\"message_type\":\"ping\",\"request_id\":\"t\"\n",          // truncated
      "{\"message_type\":\"ping\",\"x\":\"\xc3\x28\"}\n",           // invalid UTF-8
      std::string(40, '[') + std::string(40, ']') + "\n",          // deeper than 16
      "42\n",
  };
  for (const auto& line : bad) {
    client->send_raw(line);
    json response = client->next();
    expect_error(response, "MALFORMED_JSON");
    EXPECT_TRUE(response["request_id"].is_null());
  }
  // Oversized: answered once, the rest of the line skipped, the connection usable.
  client->send_raw(std::string(10000, 'x'));
  client->send_raw(std::string(10000, 'y') + "\n");
  expect_error(client->next(), "MESSAGE_TOO_LARGE");
  EXPECT_TRUE(client->request(message("ping", "after"))["success"].get<bool>());
  // A whole valid message over the limit.
  json big = message("ping", "big", {{"pad", std::string(5000, 'z')}});
  client->send(big);
  expect_error(client->next(), "MESSAGE_TOO_LARGE");
  // Deep but within the limit is fine; a truncated line at disconnect is just dropped.
  json nested = json::object();
  for (int i = 0; i < 10; ++i) nested = json{{"n", nested}};
  EXPECT_TRUE(client->request(message("ping", "deep", nested))["success"].get<bool>());
  client->send_raw("{\"message_type\":\"pi");
  client->raw().close();
  EXPECT_TRUE(fixture.client()->request(message("ping", "other"))["success"].get<bool>());
}

TEST(SocketServer, ConcurrentClientsGetTheirOwnAnswers) {
  HostFixture fixture(json{{"queue", {{"executors", 2}}}});
  constexpr int kClients = 8;
  std::vector<std::future<bool>> results;
  for (int c = 0; c < kClients; ++c) {
    results.push_back(std::async(std::launch::async, [&fixture, c] {
      auto client = fixture.client();
      bool ok = true;
      for (int i = 0; i < 3; ++i) {
        std::string id = "c" + std::to_string(c) + "-" + std::to_string(i);
        json response = client->request(i == 1 ? generation(id, 2, 1) : message("ping", id));
        ok = ok && response.value("request_id", "") == id && response.value("success", false);
      }
      return ok;
    }));
  }
  for (auto& result : results) EXPECT_TRUE(result.get());
}

TEST(SocketServer, SocketFileModeStaleSocketAndRemovalAtExit) {
  std::string endpoint;
  {
    HostFixture fixture;
    endpoint = fixture.endpoint();
    struct stat info {};
    ASSERT_EQ(::stat(endpoint.c_str(), &info), 0);
    EXPECT_TRUE(S_ISSOCK(info.st_mode));
    EXPECT_EQ(info.st_mode & 0777, 0600u);
    // A second server on the same live endpoint is refused.
    boost::asio::io_context io;
    host::transport::PipeServer second(io, {endpoint, 0600, 1024}, fixture.host());
    EXPECT_THROW(second.start(), sdk::Error);
  }
  EXPECT_FALSE(std::filesystem::exists(endpoint));
  // A stale socket (bound, nobody listening) is replaced at start.
  auto dir = make_temp_dir("stale");
  std::string stale = (dir / "host.sock").string();
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::snprintf(address.sun_path, sizeof address.sun_path, "%s", stale.c_str());
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ::close(fd);
  ASSERT_TRUE(std::filesystem::exists(stale));
  {
    HostFixture fixture(json{{"pipe_name", stale}, {"socket_mode", "0660"}});
    struct stat info {};
    ASSERT_EQ(::stat(stale.c_str(), &info), 0);
    EXPECT_EQ(info.st_mode & 0777, 0660u);
    EXPECT_TRUE(fixture.client()->request(message("ping", "p"))["success"].get<bool>());
  }
  std::filesystem::remove_all(dir);
}

TEST(SocketServer, PluginLoadFailuresAreVisibleInCapabilities) {
  HostFixture fixture;
  json plugins = fixture.client()->request(message("capabilities", "c"))["data"]["plugins"];
  for (const char* name : {"test_bad_abi", "test_no_symbol", "test_throws_init", "test_not_a_library"}) {
    const json* plugin = find_plugin(plugins, name);
    ASSERT_NE(plugin, nullptr) << name << " missing from " << plugins.dump();
    EXPECT_EQ((*plugin)["state"], "failed") << plugin->dump();
    EXPECT_FALSE((*plugin)["reason"].get<std::string>().empty());
  }
  EXPECT_EQ((*find_plugin(plugins, "test_generate"))["state"], "loaded");
}

TEST(SocketServer, PathEscapesAreRefused) {
  HostFixture fixture;
  auto client = fixture.client();
  expect_error(client->request(generation("a", 1, 1, {{"models", {{"base", "../../etc/passwd"}}}})),
               "VALIDATION_ERROR", "data.models.base");
  expect_error(client->request(generation("b", 1, 1, {{"models", {{"vae", "/etc/passwd"}}}})), "VALIDATION_ERROR",
               "data.models.vae");
  expect_error(client->request(generation("c", 1, 1, {{"output", {{"save_path", "../escape.png"}}}})),
               "VALIDATION_ERROR", "data.output.save_path");
  expect_error(client->request(generation("d", 1, 1, {{"output", {{"save_path", "/tmp/escape.png"}}}})),
               "VALIDATION_ERROR", "data.output.save_path");
  expect_error(client->request(message("unload_model", "e", {{"name", "../x"}})), "VALIDATION_ERROR");
  EXPECT_FALSE(std::filesystem::exists(fixture.dir() / "escape.png"));
}

TEST(SocketServer, DryRunReturnsPlanAndNormalizedRequest) {
  HostFixture fixture;
  auto client = fixture.client();
  json response = client->request(generation("dry", 5, 1, {{"dry_run", true}, {"output", {{"upscale", true}, {"save_path", "dry.png"}}}}));
  ASSERT_TRUE(response["success"].get<bool>()) << response.dump();
  const json& data = response["data"];
  EXPECT_EQ(data["stages"], json({"test_prepare", "test_denoise", "test_upscale"}));
  EXPECT_EQ(data["normalized_request"]["hyperparameters"]["num_inference_steps"], 5);
  EXPECT_EQ(data["normalized_request"]["dimensions"]["width"], 16);
  EXPECT_FALSE(std::filesystem::exists(fixture.dir() / "out" / "dry.png"));
}

TEST(SocketServer, ReloadConfigTogglesPluginsAndKeepsConfigOnBadFile) {
  HostFixture fixture(json{{"plugins", {{"enabled", {{"test_upscale", false}}}}}});
  auto client = fixture.client();
  json upscale = {{"output", {{"upscale", {{"enabled", true}}}}}};
  json refused = client->request(generation("u1", 1, 1, upscale));
  expect_error(refused, "FEATURE_DISABLED");
  EXPECT_NE(refused["error"].get<std::string>().find("plugins.enabled.test_upscale"), std::string::npos)
      << refused.dump();

  fixture.write_config({{"plugins", {{"enabled", {{"test_upscale", true}}}}}, {"unknown_key", 1}});
  json reloaded = client->request(message("reload_config", "r1"));
  ASSERT_TRUE(reloaded["success"].get<bool>()) << reloaded.dump();
  EXPECT_NE(reloaded["warnings"].dump().find("unknown_key"), std::string::npos);
  json upscaled = client->request(generation("u2", 1, 1, upscale));
  ASSERT_TRUE(upscaled["success"].get<bool>()) << upscaled.dump();
  EXPECT_EQ(upscaled["data"]["stages"].back(), "test_upscale");
  EXPECT_EQ(upscaled["data"]["generated_images"][0]["width"], 32);

  // A bad file is refused, the running config stays (upscaler still on).
  fixture.write_config({{"limits", {{"max_steps", -4}}}});
  expect_error(client->request(message("reload_config", "r2")), "VALIDATION_ERROR", "limits.max_steps");
  EXPECT_TRUE(client->request(generation("u3", 1, 1, upscale))["success"].get<bool>());

  // on_disabled_feature "warn": runs without the feature and says so.
  fixture.write_config({{"plugins", {{"enabled", {{"test_upscale", false}}}}}, {"on_disabled_feature", "warn"}});
  ASSERT_TRUE(client->request(message("reload_config", "r3"))["success"].get<bool>());
  json warned = client->request(generation("u4", 1, 1, upscale));
  ASSERT_TRUE(warned["success"].get<bool>()) << warned.dump();
  EXPECT_EQ(warned["data"]["stages"], json({"test_prepare", "test_denoise"}));
  EXPECT_NE(warned["warnings"].dump().find("upscaler"), std::string::npos) << warned.dump();
}

}  // namespace
}  // namespace sdxlhost::test_support
