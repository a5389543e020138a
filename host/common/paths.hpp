#pragma once
/// @file paths.hpp
/// Path checks shared by the model store and the image writer (names and save paths that must
/// stay inside their root folder).

#include <filesystem>

namespace sdxlhost::host {

/// True when `inner` is `outer` or lies below it, comparing path elements (both should be
/// canonical: no `..`, no links, same spelling).
bool is_within(const std::filesystem::path& inner, const std::filesystem::path& outer);

}  // namespace sdxlhost::host
