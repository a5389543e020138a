#pragma once
/// @file models.hpp
/// How a stage reaches model files and the host's model cache. Models are named, never pathed:
/// `resolve("checkpoints", "NAME")` finds models_root/checkpoints/NAME(.safetensors) and refuses
/// names that escape that folder. Loaded objects go through `load` so the host can share them
/// between jobs and evict the least recently used ones that no job is holding.
/// Thread-safety: all methods may be called from any job concurrently.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
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
  /// The returned pointer keeps the object alive; the cache never evicts an object in use.
  virtual std::shared_ptr<void> load(const std::string& kind, const std::string& name,
                                     const std::string& variant, const std::string& field,
                                     const ModelLoadFn& load) = 0;

  /// Typed convenience over `load`: the loader returns (object, bytes).
  template <class T>
  std::shared_ptr<T> load_as(const std::string& kind, const std::string& name,
                             const std::string& variant, const std::string& field,
                             const std::function<std::pair<std::shared_ptr<T>, std::uint64_t>(
                                 const std::filesystem::path&)>& loader) {
    auto object = load(kind, name, variant, field, [&](const std::filesystem::path& file) {
      auto [ptr, bytes] = loader(file);
      return CachedModel{std::static_pointer_cast<void>(ptr), bytes};
    });
    return std::static_pointer_cast<T>(object);
  }
};

}  // namespace sdxlhost::sdk
