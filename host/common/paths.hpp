#pragma once
/// @file paths.hpp
/// Path checks shared by the model store and the image writer (names and save paths that must
/// stay inside their root folder). The checks of the text are the SDK's (relative_path.hpp).

#include <filesystem>
#include <string>

#include "sdxlhost/sdk/relative_path.hpp"

namespace sdxlhost::host {

/// True when `inner` is `outer` or lies below it, comparing path elements (both should be
/// canonical: no `..`, no links, same spelling).
bool is_within(const std::filesystem::path& inner, const std::filesystem::path& outer);

/// The check of a request's `output.save_path`: the SDK's one relative-path check
/// (sdxlhost/sdk/relative_path.hpp), which the parser runs and the image writer repeats.
using sdk::check_save_path;

}  // namespace sdxlhost::host
