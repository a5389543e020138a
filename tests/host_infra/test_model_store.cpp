// ModelStore: sandboxed name resolution (.., absolute, NUL/backslash, symlinks out), LRU by
// count and bytes that never evicts what a job holds, single load under concurrency, code
// anchors, list/unload/stats/drop_all.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "error_capture.hpp"
#include "host/models/job_models.hpp"
#include "host/models/model_store.hpp"
#include "host/plugins/plugin_manager.hpp"
#include "sdxlhost/sdk/error.hpp"
#include "common/goldens.hpp"
#include "common/temp_dir.hpp"

namespace fs = std::filesystem;
using namespace sdxlhost;
using host::ModelStore;
using host::ModelStoreSettings;
using sdk::ErrorCode;
using test_support::code_of;

namespace {

class ModelStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = tmp_ / "models";
    test_support::write_bytes(root_ / "checkpoints" / "base.safetensors", std::string(100, 'a'));
    test_support::write_bytes(root_ / "checkpoints" / "other.safetensors", std::string(50, 'b'));
    test_support::write_bytes(root_ / "checkpoints" / "third.safetensors", std::string(10, 'c'));
    test_support::write_bytes(root_ / "checkpoints" / "diffusers_model" / "unet" / "w.bin", std::string(30, 'd'));
    test_support::write_bytes(root_ / "loras" / "style.safetensors", std::string(20, 'e'));
    test_support::write_bytes(tmp_ / "secret" / "outside.safetensors", "secret");
    fs::create_symlink(tmp_ / "secret" / "outside.safetensors", root_ / "checkpoints" / "escape.safetensors");
    fs::create_symlink(tmp_ / "secret", root_ / "checkpoints" / "escape_dir");
    fs::create_symlink(root_ / "checkpoints" / "base.safetensors", root_ / "checkpoints" / "alias.safetensors");
  }

  /// A loader that counts its calls and reports `bytes`.
  sdk::ModelLoadFn counting_loader(std::uint64_t bytes) {
    return [this, bytes](const fs::path& file) {
      ++loads_;
      return sdk::CachedModel{std::make_shared<std::string>(file.filename().string()), bytes};
    };
  }

  ErrorCode resolve_error(ModelStore& store, const std::string& name, std::string* message = nullptr) {
    try {
      store.resolve("checkpoints", name, "data.models.base");
    } catch (const sdk::Error& e) {
      EXPECT_EQ(e.field(), "data.models.base");
      if (message) *message = e.message();
      return e.code();
    }
    ADD_FAILURE() << "'" << name << "' resolved";
    return ErrorCode::InternalError;
  }

  test_support::TempDir tmp_;
  fs::path root_;
  std::atomic<int> loads_{0};
};

}  // namespace

TEST_F(ModelStoreTest, ResolvesFilesWithOrWithoutExtensionAndFolders) {
  ModelStore store(ModelStoreSettings{root_});
  const fs::path base = fs::canonical(root_ / "checkpoints" / "base.safetensors");
  EXPECT_EQ(store.resolve("checkpoints", "base", "data.models.base"), base);
  EXPECT_EQ(store.resolve("checkpoints", "base.safetensors", "data.models.base"), base);
  EXPECT_EQ(store.resolve("checkpoints", "alias", "data.models.base"), base);  // link inside is fine
  EXPECT_EQ(store.resolve("checkpoints", "diffusers_model", "data.models.base"),
            fs::canonical(root_ / "checkpoints" / "diffusers_model"));
  EXPECT_EQ(store.resolve("loras", "style", "data.lora.models[0].name").filename(), "style.safetensors");
}

TEST_F(ModelStoreTest, RefusesNamesThatEscapeTheirFolder) {
  ModelStore store(ModelStoreSettings{root_});
  for (const std::string& name : std::vector<std::string>{"../loras/style", "..", "sub/../../loras/style", "/etc/passwd",
                                 std::string("base\0x", 6), "dir\\base", "", "escape", "escape_dir",
                                 "escape_dir/outside"})
    EXPECT_EQ(resolve_error(store, name), ErrorCode::ValidationError) << name;
}

TEST_F(ModelStoreTest, UnknownNamesAreModelNotFoundWithoutPaths) {
  ModelStore store(ModelStoreSettings{root_});
  std::string message;
  EXPECT_EQ(resolve_error(store, "nope", &message), ErrorCode::ModelNotFound);
  EXPECT_EQ(message.find(root_.string()), std::string::npos) << message;
  EXPECT_NE(message.find("nope"), std::string::npos);
  EXPECT_THROW(store.resolve("weights", "base", "f"), sdk::Error);  // unknown kind
}

TEST_F(ModelStoreTest, CacheHitsLoadOnce) {
  ModelStore store(ModelStoreSettings{root_, 4, 0});
  auto a = store.load("checkpoints", "base", "unet", "data.models.base", typeid(std::string), counting_loader(10));
  auto b = store.load("checkpoints", "base.safetensors", "unet", "data.models.base", typeid(std::string), counting_loader(10));
  EXPECT_EQ(a, b);
  EXPECT_EQ(loads_, 1);
  auto vae = store.load("checkpoints", "base", "vae", "data.models.base", typeid(std::string), counting_loader(10));
  EXPECT_NE(vae, a);
  EXPECT_EQ(loads_, 2);
  EXPECT_EQ(*std::static_pointer_cast<std::string>(a), "base.safetensors");
  EXPECT_EQ(store.stats()["hits"], 1);
  EXPECT_EQ(store.stats()["misses"], 2);
}

TEST_F(ModelStoreTest, LruEvictionSkipsModelsInUse) {
  ModelStore store(ModelStoreSettings{root_, 2, 0});
  auto held = store.load("checkpoints", "base", "", "f", typeid(std::string), counting_loader(1));  // LRU, but in use
  store.load("checkpoints", "other", "", "f", typeid(std::string), counting_loader(1));
  store.load("checkpoints", "third", "", "f", typeid(std::string), counting_loader(1));  // must evict "other"
  const auto stats = store.stats();
  EXPECT_EQ(stats["loaded_models"], 2);
  EXPECT_EQ(stats["evictions"], 1);
  loads_ = 0;
  store.load("checkpoints", "base", "", "f", typeid(std::string), counting_loader(1));
  EXPECT_EQ(loads_, 0) << "the held model was evicted";
  store.load("checkpoints", "other", "", "f", typeid(std::string), counting_loader(1));
  EXPECT_EQ(loads_, 1) << "the unused model was kept";
}

TEST_F(ModelStoreTest, MemoryFractionEvictsLeastRecentlyUsedUnusedModelsBeforeALoad) {
  std::uint64_t available = 1000;  // what the "system" still has, in bytes
  ModelStore store(ModelStoreSettings{root_, 0, 0, 0.5, [&] { return available; }});
  store.load("checkpoints", "base", "", "f", typeid(std::string), counting_loader(300));  // 0 + 100 on disk <= 0.5 x 1000
  auto held = store.load("checkpoints", "other", "", "f", typeid(std::string), counting_loader(300));
  EXPECT_EQ(store.stats()["evictions"], 0);
  // The system has little left: 0.5 x (200 + 600 cached) = 400 < 600 + 10 on disk. "base" (least
  // recently used, unused) goes before the load; "other" is held by a job and stays.
  available = 200;
  store.load("checkpoints", "third", "", "f", typeid(std::string), counting_loader(10));
  auto stats = store.stats();
  EXPECT_EQ(stats["evictions"], 1);
  EXPECT_EQ(stats["loaded_bytes"], 310);
  ASSERT_EQ(stats["recent_evictions"].size(), 1u);
  EXPECT_EQ(stats["recent_evictions"][0]["name"], "base");
  EXPECT_EQ(stats["recent_evictions"][0]["reason"], "max_memory_fraction");
  EXPECT_NE(stats["recent_evictions"][0]["detail"].get<std::string>().find("cache.max_memory_fraction"), std::string::npos);
  EXPECT_EQ(stats["max_memory_fraction"], 0.5);
  // Nothing left to evict (third is unused: it goes; other is held): the load goes ahead anyway.
  available = 0 + 1;
  store.load("loras", "style", "", "f", typeid(std::string), counting_loader(20));
  stats = store.stats();
  EXPECT_EQ(stats["evictions"], 2);
  EXPECT_EQ(stats["recent_evictions"][0]["name"], "third");
  EXPECT_EQ(stats["loaded_bytes"], 320) << "the held model was evicted or the load refused";
  // 0 = off: no eviction for memory whatever the system has.
  ModelStore off(ModelStoreSettings{root_, 0, 0, 0.0, [] { return std::uint64_t{1}; }});
  off.load("checkpoints", "base", "", "f", typeid(std::string), counting_loader(300));
  off.load("checkpoints", "other", "", "f", typeid(std::string), counting_loader(300));
  EXPECT_EQ(off.stats()["evictions"], 0);
}

TEST_F(ModelStoreTest, CountAndByteEvictionsSayWhy) {
  ModelStore store(ModelStoreSettings{root_, 1, 0});
  store.load("checkpoints", "base", "", "f", typeid(std::string), counting_loader(1));
  store.load("checkpoints", "other", "", "f", typeid(std::string), counting_loader(1));
  const auto stats = store.stats();
  ASSERT_EQ(stats["recent_evictions"].size(), 1u);
  EXPECT_EQ(stats["recent_evictions"][0]["reason"], "max_models");
  EXPECT_EQ(stats["recent_evictions"][0]["name"], "base");
}

TEST_F(ModelStoreTest, ByteBudgetEvictsLeastRecentlyUsedUnusedModels) {
  ModelStore store(ModelStoreSettings{root_, 0, 100});
  store.load("checkpoints", "base", "", "f", typeid(std::string), counting_loader(60));
  store.load("checkpoints", "other", "", "f", typeid(std::string), counting_loader(30));
  store.load("checkpoints", "base", "", "f", typeid(std::string), counting_loader(60));  // base is now most recent
  store.load("checkpoints", "third", "", "f", typeid(std::string), counting_loader(30));  // 120 > 100: evict "other"
  auto stats = store.stats();
  EXPECT_EQ(stats["loaded_bytes"], 90);
  EXPECT_EQ(stats["evictions"], 1);
  // Everything held: the budget is exceeded rather than breaking a job.
  auto x = store.load("checkpoints", "other", "", "f", typeid(std::string), counting_loader(30));
  auto y = store.load("checkpoints", "base", "", "f", typeid(std::string), counting_loader(60));
  auto z = store.load("checkpoints", "third", "", "f", typeid(std::string), counting_loader(30));
  auto w = store.load("loras", "style", "", "f", typeid(std::string), counting_loader(50));
  EXPECT_EQ(store.stats()["loaded_bytes"], 170);
  x.reset(); y.reset(); z.reset(); w.reset();
  store.load("checkpoints", "diffusers_model", "", "f", typeid(std::string), counting_loader(10));
  EXPECT_LE(store.stats()["loaded_bytes"].get<std::uint64_t>(), 100u);
}

TEST_F(ModelStoreTest, ConcurrentLoadsOfOneModelLoadOnce) {
  ModelStore store(ModelStoreSettings{root_, 4, 0});
  auto slow_loader = [this](const fs::path&) {
    ++loads_;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    return sdk::CachedModel{std::make_shared<int>(7), 4};
  };
  std::vector<std::shared_ptr<void>> results(8);
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i)
    threads.emplace_back([&, i] { results[i] = store.load("checkpoints", "base", "", "f", typeid(int), slow_loader); });
  for (auto& t : threads) t.join();
  EXPECT_EQ(loads_, 1);
  for (const auto& r : results) EXPECT_EQ(r, results[0]);
}

TEST_F(ModelStoreTest, LoaderFailuresAreModelLoadErrorsAndAreNotCached) {
  ModelStore store(ModelStoreSettings{root_});
  auto failing = [](const fs::path&) -> sdk::CachedModel { throw std::runtime_error("corrupt header"); };
  try {
    store.load("checkpoints", "base", "", "data.models.base", typeid(std::string), failing);
    ADD_FAILURE() << "no error";
  } catch (const sdk::Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::ModelLoadError);
    EXPECT_EQ(e.field(), "data.models.base");
    EXPECT_NE(e.message().find("corrupt header"), std::string::npos);
  }
  store.load("checkpoints", "base", "", "data.models.base", typeid(std::string), counting_loader(1));
  EXPECT_EQ(loads_, 1);
}

TEST_F(ModelStoreTest, ModelLoadErrorsWithoutAFieldGetTheRequestField) {
  ModelStore store(ModelStoreSettings{root_});
  auto unreadable = [](const fs::path&) -> sdk::CachedModel {
    throw sdk::Error(ErrorCode::ModelLoadError, "base.safetensors: header length past end of file");
  };
  try {
    store.load("checkpoints", "base", "", "data.models.base", typeid(std::string), unreadable);
    ADD_FAILURE() << "no error";
  } catch (const sdk::Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::ModelLoadError);
    EXPECT_EQ(e.field(), "data.models.base");
  }
  // Errors about something else keep their own code and (empty) field.
  auto cancelled = [](const fs::path&) -> sdk::CachedModel {
    throw sdk::Error(ErrorCode::Cancelled, "the job was cancelled");
  };
  try {
    store.load("checkpoints", "base", "", "data.models.base", typeid(std::string), cancelled);
    ADD_FAILURE() << "no error";
  } catch (const sdk::Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Cancelled);
    EXPECT_EQ(e.field(), "");
  }
}

TEST_F(ModelStoreTest, UnloadRefusesModelsInUse) {
  ModelStore store(ModelStoreSettings{root_});
  EXPECT_FALSE(store.unload("checkpoints", "base"));
  auto held = store.load("checkpoints", "base", "", "f", typeid(std::string), counting_loader(1));
  try {
    store.unload("checkpoints", "base", "data.name");
    ADD_FAILURE() << "unloaded a model in use";
  } catch (const sdk::Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::ValidationError);
    EXPECT_EQ(e.field(), "data.name");
  }
  held.reset();
  EXPECT_TRUE(store.unload("checkpoints", "base"));
  EXPECT_EQ(store.stats()["loaded_models"], 0);
}

TEST_F(ModelStoreTest, ListModelsShowsWhatIsThereButNotEscapes) {
  ModelStore store(ModelStoreSettings{root_});
  auto held = store.load("checkpoints", "base", "", "f", typeid(std::string), counting_loader(1));
  const auto listed = store.list_models();
  for (const char* kind : {"checkpoints", "loras", "controlnet", "vae", "upscalers"})
    EXPECT_TRUE(listed.contains(kind)) << kind;
  std::map<std::string, nlohmann::json> by_name;
  for (const auto& m : listed["checkpoints"]) by_name[m["name"]] = m;
  EXPECT_TRUE(by_name.count("base") && by_name.count("other") && by_name.count("diffusers_model"));
  EXPECT_FALSE(by_name.count("escape") || by_name.count("escape_dir"));
  EXPECT_EQ(by_name["base"]["size_bytes"], 100);
  EXPECT_EQ(by_name["base"]["loaded"], true);
  EXPECT_EQ(by_name["other"]["loaded"], false);
  EXPECT_EQ(by_name["diffusers_model"]["size_bytes"], 30);
  EXPECT_EQ(listed["loras"][0]["name"], "style");
}

TEST_F(ModelStoreTest, CachedObjectsKeepTheirCodeAnchorAndDieBeforeIt) {
  ModelStore store(ModelStoreSettings{root_});
  std::vector<std::string> destroyed;
  struct Tracked {
    std::vector<std::string>* log;
    std::string name;
    ~Tracked() { log->push_back(name); }
  };
  std::weak_ptr<Tracked> weak_anchor;
  {
    auto anchor = std::make_shared<Tracked>(Tracked{&destroyed, "anchor"});
    weak_anchor = anchor;
    host::ScopedCodeAnchor scope(anchor);
    store.load("checkpoints", "base", "", "f", typeid(Tracked), [&](const fs::path&) {
      return sdk::CachedModel{std::make_shared<Tracked>(Tracked{&destroyed, "model"}), 1};
    });
  }
  EXPECT_EQ(host::current_code_anchor(), nullptr);
  EXPECT_FALSE(weak_anchor.expired()) << "the cache must keep the library anchor";
  destroyed.clear();
  store.drop_all();
  EXPECT_TRUE(weak_anchor.expired());
  EXPECT_EQ(destroyed, (std::vector<std::string>{"model", "anchor"}));
  EXPECT_EQ(store.stats()["loaded_models"], 0);
}

// Issue 14: a model file truncated (or replaced) while its object is cached is not used again:
// the cached object may point into mapped bytes that are gone (SIGBUS when touched). The next
// load reads the file as it is now; a job still holding the old object keeps it.
TEST_F(ModelStoreTest, AModelFileTruncatedWhileCachedIsLoadedAgain) {
  ModelStore store(ModelStoreSettings{root_, 4, 0});
  auto first = store.load("checkpoints", "base", "unet", "data.models.base", typeid(std::string), counting_loader(10));
  EXPECT_EQ(store.load("checkpoints", "base", "unet", "data.models.base", typeid(std::string), counting_loader(10)), first);
  EXPECT_EQ(loads_, 1);
  fs::resize_file(root_ / "checkpoints" / "base.safetensors", 33);  // cut short on disk
  auto second = store.load("checkpoints", "base", "unet", "data.models.base", typeid(std::string), counting_loader(10));
  EXPECT_EQ(loads_, 2) << "the cached object of the old file was used";
  EXPECT_NE(second, first);
  EXPECT_EQ(store.stats()["loaded_models"], 1);
  // A folder model: a file inside it replaced.
  store.load("checkpoints", "diffusers_model", "unet", "data.models.base", typeid(std::string), counting_loader(5));
  test_support::write_bytes(root_ / "checkpoints" / "diffusers_model" / "unet" / "w.bin", "new weights");
  store.load("checkpoints", "diffusers_model", "unet", "data.models.base", typeid(std::string), counting_loader(5));
  EXPECT_EQ(loads_, 4);
  // A loader that fails on the truncated file: a clear MODEL_LOAD_ERROR, nothing stale cached.
  fs::resize_file(root_ / "checkpoints" / "base.safetensors", 3);
  std::string field;
  EXPECT_EQ(code_of([&] {
              store.load("checkpoints", "base", "unet", "data.models.base", typeid(std::string), [](const fs::path&) -> sdk::CachedModel {
                throw sdk::Error(ErrorCode::ModelLoadError, "header cut short");
              });
            }, nullptr, &field),
            ErrorCode::ModelLoadError);
  EXPECT_EQ(field, "data.models.base");
  EXPECT_EQ(*std::static_pointer_cast<std::string>(first), "base.safetensors");  // still usable by its job
}

// Issue 9 item 4: the cache keeps each object's type; the same (kind, name, variant) asked for as
// another type is refused with a clear error instead of a wrong cast.
TEST_F(ModelStoreTest, AnObjectAskedForAsAnotherTypeIsRefused) {
  ModelStore store(ModelStoreSettings{root_, 4, 0});
  auto text = store.load("checkpoints", "base", "unet", "data.models.base", typeid(std::string), counting_loader(10));
  std::string message, field;
  EXPECT_EQ(code_of([&] { store.load("checkpoints", "base", "unet", "data.models.base", typeid(int), counting_loader(10)); },
                    &message, &field),
            ErrorCode::InternalError);
  EXPECT_EQ(field, "data.models.base");
  EXPECT_NE(message.find("basic_string"), std::string::npos) << message;  // what it is...
  EXPECT_NE(message.find("asked for as int"), std::string::npos) << message;  // ...and what was asked
  EXPECT_NE(message.find("'unet'"), std::string::npos) << message;       // the variant at fault
  EXPECT_EQ(loads_, 1) << "a mismatch must not load anything";
  EXPECT_EQ(*std::static_pointer_cast<std::string>(text), "base.safetensors");  // the entry is unharmed
  EXPECT_EQ(store.load("checkpoints", "base", "unet", "f", typeid(std::string), counting_loader(10)), text);
  // another variant of the same file is another object, of any type
  store.load("checkpoints", "base", "count", "f", typeid(int), [](const fs::path&) {
    return sdk::CachedModel{std::make_shared<int>(3), 4, {}};
  });
  // the typed front end checks the same way
  EXPECT_EQ(code_of([&] {
              store.load_as<int>("checkpoints", "base", "unet", "f", [](const fs::path&) {
                return std::make_pair(std::make_shared<int>(1), std::uint64_t{4});
              });
            }),
            ErrorCode::InternalError);
}

// What a cached object keeps after loading (a pipeline's patched copies) counts in the cache's
// bytes: in stats and against cache.max_bytes at the next load.
TEST_F(ModelStoreTest, BytesAnObjectKeepsAfterLoadingCountTowardsTheBudget) {
  ModelStore store(ModelStoreSettings{root_, 0, 100});
  auto extra = std::make_shared<std::atomic<std::uint64_t>>(0);
  store.load("checkpoints", "base", "", "f", typeid(std::string), [&](const fs::path&) {
    sdk::CachedModel model{std::make_shared<std::string>("pipeline"), 40, {}};
    model.extra_bytes = [extra] { return extra->load(); };
    return model;
  });
  EXPECT_EQ(store.stats()["loaded_bytes"], 40);
  *extra = 50;  // the pipeline kept patched copies since
  EXPECT_EQ(store.stats()["loaded_bytes"], 90);
  EXPECT_EQ(store.stats()["models"][0]["bytes"], 90);
  store.load("checkpoints", "other", "", "f", typeid(std::string), counting_loader(20));  // 110 > 100
  const auto stats = store.stats();
  EXPECT_EQ(stats["evictions"], 1);
  EXPECT_EQ(stats["recent_evictions"][0]["name"], "base");
  EXPECT_EQ(stats["recent_evictions"][0]["bytes"], 90);
  EXPECT_EQ(stats["loaded_bytes"], 20);
}

// A job pins every model it loaded until it ends: a stage releasing its pointer does not make the
// model evictable between two stages of the job (another job's load would have evicted it).
TEST_F(ModelStoreTest, AJobPinsItsModelsFromItsFirstStageToItsLast) {
  ModelStore store(ModelStoreSettings{root_, 1, 0});
  {
    // Without pins (what a stage alone holds): released after the stage, evicted by the next load.
    store.load("checkpoints", "base", "", "f", typeid(std::string), counting_loader(1));
    store.load("checkpoints", "other", "", "f", typeid(std::string), counting_loader(1));
    EXPECT_EQ(store.stats()["evictions"], 1);
    store.drop_all();
  }
  loads_ = 0;
  {
    host::JobModels job(store);
    job.load("checkpoints", "base", "", "f", typeid(std::string), counting_loader(1));  // stage 1, pointer dropped
    job.load("checkpoints", "base", "", "f", typeid(std::string), counting_loader(1));  // the same object again
    EXPECT_EQ(job.pinned(), 1u);
    store.load("checkpoints", "other", "", "f", typeid(std::string), counting_loader(1));  // another job's load
    EXPECT_EQ(loads_, 2);
    job.load("checkpoints", "base", "", "f", typeid(std::string), counting_loader(1));  // stage 2
    EXPECT_EQ(loads_, 2) << "the job's model was evicted between its stages";
    EXPECT_EQ(code_of([&] { store.unload("checkpoints", "base"); }), ErrorCode::ValidationError)
        << "a pinned model is in use";
    EXPECT_EQ(job.resolve("checkpoints", "base", "f"), store.resolve("checkpoints", "base", "f"));
  }
  // The job ended: its model is evictable again.
  store.load("checkpoints", "third", "", "f", typeid(std::string), counting_loader(1));
  for (const auto& model : store.stats()["models"]) EXPECT_NE(model["name"], "base");
}
