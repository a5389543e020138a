// Plugin files that are cut short or replaced (issue 14, item 1): the host checks the ELF image
// before dlopen, loads every plugin from a private content-addressed copy, and a file truncated
// or overwritten in plugins.dir while loaded never reaches the code that is running.
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <elf.h>
#include <fstream>

#include <gtest/gtest.h>

#include "host/graph/plan_runner.hpp"
#include "host/graph/planner.hpp"
#include "host/plugins/plugin_file.hpp"
#include "host/plugins/plugin_manager.hpp"
#include "sdxlhost/sdk/image.hpp"
#include "sdxlhost/sdk/request.hpp"
#include "common/goldens.hpp"
#include "common/temp_dir.hpp"

namespace fs = std::filesystem;
using namespace sdxlhost;
using host::PluginManager;
using host::PluginSettings;

namespace {

fs::path test_plugin(const char* name) { return fs::path(SDXLHOST_TEST_PLUGIN_DIR) / (std::string(name) + ".so"); }

std::string read_all(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// Overwrites `file` in place (same inode, as `cp new old` does) with `bytes`.
void overwrite_in_place(const fs::path& file, const std::string& bytes) {
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

const nlohmann::json* find_plugin(const nlohmann::json& described, const std::string& name) {
  for (const auto& p : described)
    if (p["name"] == name) return &p;
  return nullptr;
}

std::string state_of(const nlohmann::json& described, const std::string& name) {
  const auto* p = find_plugin(described, name);
  return p ? (*p)["state"].get<std::string>() : "absent";
}

std::string reason_of(const nlohmann::json& described, const std::string& name) {
  const auto* p = find_plugin(described, name);
  return p ? (*p)["reason"].get<std::string>() : "";
}

/// Runs test_generate's two stages on a 16x8 request through `set`; returns the image count.
std::size_t run_test_generate(const std::shared_ptr<const host::PluginSet>& set) {
  auto request = std::make_shared<sdk::GenerationRequest>();
  request->width = 16;
  request->height = 8;
  request->hyperparameters.num_inference_steps = 2;
  request->data = {{"test", {{"step_ms", 0}}}};
  std::vector<std::string> warnings;
  host::Plan plan = host::plan_request(*set, *request, host::OnDisabledFeature::Error, warnings);
  sdk::Context context(request, sdk::ContextServices{});
  host::run_plan(plan, context);
  const std::size_t n = context.get<std::vector<sdk::Image>>("images").size();
  context.erase("images");
  return n;
}

}  // namespace

TEST(PluginFile, ARealPluginPassesTheImageCheck) {
  EXPECT_NO_THROW(host::check_library_image(read_all(test_plugin("test_generate"))));
}

TEST(PluginFile, EveryTruncationOfARealPluginIsRefusedBeforeDlopen) {
  const std::string bytes = read_all(test_plugin("test_generate"));
  ASSERT_GT(bytes.size(), 4096u);
  for (std::size_t cut : {std::size_t{0}, std::size_t{3}, std::size_t{63}, std::size_t{64}, std::size_t{200},
                          bytes.size() / 8, bytes.size() / 3, bytes.size() / 2, bytes.size() * 7 / 8}) {
    try {
      host::check_library_image(std::string_view(bytes.data(), cut));
      ADD_FAILURE() << "a file cut to " << cut << " of " << bytes.size() << " bytes passed";
    } catch (const host::BadPluginFile& e) {
      EXPECT_NE(std::string(e.what()).find("not a complete library"), std::string::npos) << e.what();
    }
  }
}

TEST(PluginFile, HeadersPointingOutsideTheFileAreRefused) {
  const std::string good = read_all(test_plugin("test_generate"));
  Elf64_Ehdr eh;
  std::memcpy(&eh, good.data(), sizeof eh);
  auto with = [&](auto&& change) {
    std::string bytes = good;
    change(bytes);
    return bytes;
  };
  auto refused = [](const std::string& bytes) {
    try {
      host::check_library_image(bytes);
      return false;
    } catch (const host::BadPluginFile&) {
      return true;
    }
  };
  // A PT_LOAD whose offset is near 2^64 (overflow) and one whose size runs past the end.
  for (unsigned i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph;
    const std::size_t at = eh.e_phoff + i * sizeof(Elf64_Phdr);
    std::memcpy(&ph, good.data() + at, sizeof ph);
    if (ph.p_type != PT_LOAD) continue;
    EXPECT_TRUE(refused(with([&](std::string& b) {
      Elf64_Phdr bad = ph;
      bad.p_offset = ~std::uint64_t{0} - 10;
      std::memcpy(b.data() + at, &bad, sizeof bad);
    })));
    EXPECT_TRUE(refused(with([&](std::string& b) {
      Elf64_Phdr bad = ph;
      bad.p_filesz = good.size() + 1;
      bad.p_memsz = bad.p_filesz;
      std::memcpy(b.data() + at, &bad, sizeof bad);
    })));
    break;
  }
  EXPECT_TRUE(refused(with([&](std::string& b) { b[EI_CLASS] = ELFCLASS32; })));
  EXPECT_TRUE(refused(with([&](std::string& b) {
    Elf64_Ehdr bad = eh;
    bad.e_type = ET_EXEC;
    std::memcpy(b.data(), &bad, sizeof bad);
  })));
  EXPECT_TRUE(refused(with([&](std::string& b) {
    Elf64_Ehdr bad = eh;
    bad.e_phoff = good.size() - 8;
    std::memcpy(b.data(), &bad, sizeof bad);
  })));
  EXPECT_TRUE(refused(with([&](std::string& b) {
    Elf64_Ehdr bad = eh;
    bad.e_machine = EM_ARM;
    std::memcpy(b.data(), &bad, sizeof bad);
  })));
}

TEST(PluginFile, CopiesAreContentAddressedPrivateAndRemovedWithTheManager) {
  test_support::TempDir tmp;
  fs::path copy_dir;
  {
    host::PluginRunDir run_dir(tmp / "run");
    const fs::path a = run_dir.copy(test_plugin("test_generate"));
    const fs::path b = run_dir.copy(test_plugin("test_generate"));
    const fs::path c = run_dir.copy(test_plugin("test_upscale"));
    EXPECT_EQ(a, b);
    EXPECT_NE(a, c);
    EXPECT_EQ(a.parent_path(), run_dir.dir());
    EXPECT_EQ(read_all(a), read_all(test_plugin("test_generate")));
    struct stat st {};
    ASSERT_EQ(::stat(run_dir.dir().c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0700u);
    copy_dir = run_dir.dir();
    EXPECT_THROW(run_dir.copy(tmp / "missing.so"), host::BadPluginFile);
  }
  EXPECT_FALSE(fs::exists(copy_dir));
}

TEST(PluginFile, RunFoldersOfDeadProcessesAreRemoved) {
  test_support::TempDir tmp;
  // A pid that cannot exist (pid_max is at most 2^22 on Linux).
  const fs::path stale = tmp / "run" / "plugins-99999999-0";
  test_support::write_bytes(stale / "test_generate-0123.so", "old");
  const fs::path alive = tmp / "run" / ("plugins-" + std::to_string(::getppid()) + "-0");
  test_support::write_bytes(alive / "x.so", "kept");
  host::PluginRunDir run_dir(tmp / "run");
  run_dir.copy(test_plugin("test_generate"));
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_TRUE(fs::exists(alive));
}

TEST(PluginFile, ATruncatedPluginIsAFailedPluginAndTheOthersLoad) {
  test_support::TempDir tmp;
  const fs::path dir = tmp / "plugins";
  fs::create_directories(dir);
  fs::copy_file(test_plugin("test_generate"), dir / "test_generate.so");
  const std::string upscale = read_all(test_plugin("test_upscale"));
  test_support::write_bytes(dir / "test_upscale.so", upscale.substr(0, upscale.size() / 3));

  PluginSettings settings{dir, {}, true, nlohmann::json::object()};
  settings.run_dir = tmp / "run";
  PluginManager manager(settings);
  ASSERT_NO_THROW(manager.load());
  const auto described = manager.describe();
  EXPECT_EQ(state_of(described, "test_generate"), "loaded");
  EXPECT_EQ(state_of(described, "test_upscale"), "failed");
  EXPECT_NE(reason_of(described, "test_upscale").find("past the end of the file"), std::string::npos)
      << reason_of(described, "test_upscale");
  const auto* generate = find_plugin(described, "test_generate");
  ASSERT_NE(generate, nullptr);
  EXPECT_EQ(fs::path((*generate)["loaded_from"].get<std::string>()).parent_path().parent_path(), tmp / "run");
  EXPECT_EQ(run_test_generate(manager.current()), 1u);
}

TEST(PluginFile, APluginFileCutOrReplacedWhileLoadedLeavesTheRunningCodeAlone) {
  test_support::TempDir tmp;
  const fs::path dir = tmp / "plugins";
  fs::create_directories(dir);
  const fs::path file = dir / "test_generate.so";
  fs::copy_file(test_plugin("test_generate"), file);
  const std::string original = read_all(file);
  PluginSettings settings{dir, {}, true, nlohmann::json::object()};
  settings.run_dir = tmp / "run";
  PluginManager manager(settings);
  manager.load();
  auto running = manager.current();
  ASSERT_EQ(state_of(running->describe(), "test_generate"), "loaded");

  // A deploy half-way through `cp new.so test_generate.so`: the file is cut to a third in place.
  overwrite_in_place(file, original.substr(0, original.size() / 3));
  EXPECT_EQ(run_test_generate(running), 1u) << "the loaded plugin's code changed under it";
  ASSERT_NO_THROW(manager.reconfigure(settings));  // reload_config while the file is bad
  EXPECT_EQ(state_of(manager.describe(), "test_generate"), "failed");
  EXPECT_EQ(run_test_generate(running), 1u);

  // The deploy finishes (here: the same build again): the next reload loads it.
  overwrite_in_place(file, original);
  manager.reconfigure(settings);
  EXPECT_EQ(state_of(manager.describe(), "test_generate"), "loaded");
  EXPECT_EQ(run_test_generate(manager.current()), 1u);
  EXPECT_EQ(run_test_generate(running), 1u);
}
