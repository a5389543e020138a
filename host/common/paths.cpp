#include "host/common/paths.hpp"

#include <cstdio>

#include "host/common/log_escape.hpp"
#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::host {

bool is_within(const std::filesystem::path& inner, const std::filesystem::path& outer) {
  auto o = outer.begin();
  auto i = inner.begin();
  for (; o != outer.end(); ++o, ++i)
    if (i == inner.end() || *i != *o) return false;
  return true;
}

}  // namespace sdxlhost::host

namespace sdxlhost::host {

void check_save_path(const std::string& save_path, const std::string& field) {
  auto refuse = [&](const std::string& why) { throw sdk::Error(sdk::ErrorCode::ValidationError, why, field); };
  if (save_path.empty()) return;
  for (std::size_t i = 0; i < save_path.size(); ++i) {
    const auto c = static_cast<unsigned char>(save_path[i]);
    if (c < 0x20 || c == 0x7F) {
      char code[8];
      std::snprintf(code, sizeof code, "0x%02X", c);
      refuse("must not contain control characters (found " + std::string(code) + " at byte " + std::to_string(i) + ")");
    }
    if (c == '\\') refuse("must not contain a backslash (use '/' between folders)");
  }
  // Control characters are refused above; what escape_for_log still changes is invalid UTF-8
  // (or a C1 control / line separator, also refused).
  if (needs_log_escape(save_path)) refuse("must be valid UTF-8 text without control characters");
  const std::filesystem::path path(save_path);
  if (path.is_absolute() || path.has_root_name() || path.has_root_directory() || save_path.front() == '/')
    refuse("must be relative to output_root");
  for (const auto& part : path)
    if (part == "..") refuse("must not leave output_root ('..')");
}

}  // namespace sdxlhost::host
