#pragma once
/// @file models.hpp
/// How a stage reaches model files and the host's model cache. Models are named, never pathed:
/// `resolve("checkpoints", "NAME")` finds models_root/checkpoints/NAME(.safetensors) and refuses
/// names that escape that folder. Loaded objects go through `load` so the host can share them
/// between jobs and evict the least recently used ones that no job is holding. Every object is
/// cached with its type, and a job holds every object it loaded until it ends (the host pins
/// them), so a model is never evicted between two stages of one job.
/// Thread-safety: all methods may be called from any job concurrently.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <typeinfo>
#include <utility>

namespace sdxlhost::sdk {

/// The model kinds = subfolders of models_root.
inline constexpr const char* kCheckpoints = "checkpoints";
inline constexpr const char* kLoras = "loras";
inline constexpr const char* kControlnet = "controlnet";
inline constexpr const char* kVae = "vae";
inline constexpr const char* kUpscalers = "upscalers";
/// Every kind, in the order `list_models` shows them: the one list the host checks `data.kind`
/// and model names against. A plugin says which kinds it can preload with
/// Registries::add_model_preloader.
inline constexpr const char* kModelKinds[] = {kCheckpoints, kLoras, kControlnet, kVae, kUpscalers};

/// An object to keep in the cache, with the bytes it holds (for `cache.max_bytes`).
struct CachedModel {
  std::shared_ptr<void> object;
  std::uint64_t bytes = 0;
  /// Optional: bytes the object holds beyond `bytes` now (caches it keeps after loading, e.g. a
  /// pipeline's patched copies). The cache adds it whenever it counts, so cache.max_bytes and
  /// cache.max_memory_fraction see it at the next load. Called under the cache's lock: it must
  /// be cheap and must not call back into ModelAccess.
  std::function<std::uint64_t()> extra_bytes;
};

/// Loads one model into an object the cache keeps. Throws sdk::Error on failure.
using ModelLoadFn = std::function<CachedModel(const std::filesystem::path& file)>;

/// Model access for stages (implemented by the host).
class ModelAccess {
 public:
  virtual ~ModelAccess() = default;

  /// The file or folder for `name` of `kind`. Throws Error(ModelNotFound) when absent and
  /// Error(ValidationError) when the name escapes its folder (`..`, absolute, symlink out).
  /// @param field the request field that named it, used in the error ("data.models.base")
  virtual std::filesystem::path resolve(const std::string& kind, const std::string& name,
                                        const std::string& field) const = 0;

  /// Returns the cached object for (kind, name, variant), loading it with `load` on a miss.
  /// `variant` distinguishes different objects made from one file (e.g. "unet", "vae").
  /// `type` is the object's type: the cache keeps it with the entry, and asking for a cached
  /// (kind, name, variant) as another type throws Error(InternalError) naming both types and
  /// `field` (two plugins using one variant name for different objects), so the pointer can be
  /// cast back to `type` safely. The returned pointer keeps the object alive; the cache never
  /// evicts an object in use. Prefer load_as, which passes the type for you.
  virtual std::shared_ptr<void> load(const std::string& kind, const std::string& name,
                                     const std::string& variant, const std::string& field,
                                     const std::type_info& type, const ModelLoadFn& load) = 0;

  /// Typed convenience over `load`: the loader returns (object, bytes); the result is the
  /// object as T (checked against the type it was cached as).
  template <class T>
  std::shared_ptr<T> load_as(const std::string& kind, const std::string& name,
                             const std::string& variant, const std::string& field,
                             const std::function<std::pair<std::shared_ptr<T>, std::uint64_t>(
                                 const std::filesystem::path&)>& loader) {
    auto object = load(kind, name, variant, field, typeid(T), [&](const std::filesystem::path& file) {
      auto [ptr, bytes] = loader(file);
      return CachedModel{std::static_pointer_cast<void>(ptr), bytes, {}};
    });
    return std::static_pointer_cast<T>(object);
  }
};

}  // namespace sdxlhost::sdk
