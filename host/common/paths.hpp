#pragma once
/// @file paths.hpp
/// Path checks shared by the model store and the image writer (names and save paths that must
/// stay inside their root folder).

#include <filesystem>
#include <string>

namespace sdxlhost::host {

/// True when `inner` is `outer` or lies below it, comparing path elements (both should be
/// canonical: no `..`, no links, same spelling).
bool is_within(const std::filesystem::path& inner, const std::filesystem::path& outer);

/// The one check of a request's `output.save_path` (at parse time, so dry_run and a real run
/// agree; the image writer repeats it). Throws sdk::Error(ValidationError, `field`) when it is
/// absolute, holds a `..` element, a control character (NUL, newline, ... DEL), a backslash, or
/// bytes that are not UTF-8. An empty path is accepted (not saved).
void check_save_path(const std::string& save_path, const std::string& field);

}  // namespace sdxlhost::host
