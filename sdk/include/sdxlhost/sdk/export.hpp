#pragma once
/// @file export.hpp
/// Symbol visibility for the SDK library. Plugins are built with hidden visibility; SDK types
/// keep default visibility so RTTI (std::any, dynamic_cast, exceptions) matches across libraries.

#if defined(_WIN32)
#if defined(SDXLHOST_SDK_BUILDING)
#define SDXLHOST_API __declspec(dllexport)
#else
#define SDXLHOST_API __declspec(dllimport)
#endif
#else
#define SDXLHOST_API __attribute__((visibility("default")))
#endif
