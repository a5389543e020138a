#pragma once
/// @file relative_path.hpp
/// The one check of a path a client or a file names relative to a root folder: a request's
/// `output.save_path` (under output_root), a model name (under models_root/<kind>/), a shard
/// file named by a `*.safetensors.index.json` (beside the index). It works on the text only,
/// before the file system is touched; callers that follow links still compare the canonical
/// result with their root.
/// Thread-safety: pure functions.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "sdxlhost/sdk/export.hpp"

namespace sdxlhost::sdk {

/// What a relative path may hold, and how errors name it.
struct RelativePathRules {
  std::string subject;          ///< put before each reason ("model name "); empty: the field speaks
  std::string root = "its folder";  ///< the folder it must stay in ("output_root"), for messages
  bool allow_empty = false;     ///< an empty path is accepted (e.g. "not saved")
  bool allow_folders = true;    ///< false: one plain file name, no '/'
  bool require_utf8 = true;     ///< refuse bytes that are not UTF-8 text (and C1 controls, U+2028/9)
  std::size_t max_bytes = 0;    ///< 0: no limit
};

/// Throws Error(ValidationError, `field`) when `path` is absolute, holds a `..` element, a control
/// character (NUL, newline, ... DEL), a backslash, is empty, too long, not UTF-8 or (with
/// allow_folders false) names a folder, as `rules` allow.
SDXLHOST_API void check_relative_path(std::string_view path, const std::string& field, const RelativePathRules& rules);

/// The check of a request's `output.save_path`: relative to output_root, folders allowed, empty
/// accepted (not saved). The parser runs it, so dry_run and a real run agree; the image writer
/// repeats it for requests that arrive by other paths.
SDXLHOST_API void check_save_path(std::string_view save_path, const std::string& field);

/// Length (1..4) of the well-formed UTF-8 sequence at `text[i]`, with its code point in `code`;
/// 0 when there is none (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF).
SDXLHOST_API std::size_t utf8_sequence(std::string_view text, std::size_t i, std::uint32_t& code);

}  // namespace sdxlhost::sdk
