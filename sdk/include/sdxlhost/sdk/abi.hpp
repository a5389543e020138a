#pragma once
/// @file abi.hpp
/// The plugin boundary's version. A plugin exports `sdxlhost_abi_version` (see plugin.hpp); the
/// host refuses a plugin whose major version differs or whose build identity (compiler,
/// libtorch) is not its own, and says why in `capabilities`.

namespace sdxlhost::sdk {

/// Bumped whenever a type that crosses the boundary changes layout or meaning.
inline constexpr int kAbiVersion = 6;  // 2: WeightTarget::keys, ModelPatch::cache_key(Context&); 3: Preprocessor::options/description; 4: GenerationRequest::dimensions_given; 5: PluginInfo::request_features; 6: ModelAccess::load takes the object's type, CachedModel::extra_bytes, nn models patched through copies (WeightOverlay, with_weights)

/// Identity of the toolchain and libtorch a binary was built against. Plugins and host are
/// C++ objects passed across shared-library boundaries, so both must agree exactly.
#if defined(__GNUC__) && !defined(__clang__)
#define SDXLHOST_COMPILER_ID "gcc-" __VERSION__
#elif defined(__clang__)
#define SDXLHOST_COMPILER_ID "clang-" __clang_version__
#elif defined(_MSC_VER)
#define SDXLHOST_STR2(x) #x
#define SDXLHOST_STR(x) SDXLHOST_STR2(x)
#define SDXLHOST_COMPILER_ID "msvc-" SDXLHOST_STR(_MSC_VER)
#else
#define SDXLHOST_COMPILER_ID "unknown"
#endif

/// Build identity compiled into the host and every plugin; compared at load.
inline constexpr const char* kBuildId = SDXLHOST_COMPILER_ID;

}  // namespace sdxlhost::sdk
