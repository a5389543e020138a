// The relative-path check (see relative_path.hpp).
#include "sdxlhost/sdk/relative_path.hpp"

#include <cstdio>
#include <filesystem>

#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::sdk {
namespace {

/// C1 controls and the Unicode line/paragraph separators: invisible, and they split log lines.
bool is_hidden_control(std::uint32_t code) { return (code >= 0x80 && code <= 0x9F) || code == 0x2028 || code == 0x2029; }

bool is_plain_utf8(std::string_view text) {
  for (std::size_t i = 0; i < text.size();) {
    std::uint32_t code = 0;
    const std::size_t n = utf8_sequence(text, i, code);
    if (n == 0 || is_hidden_control(code)) return false;
    i += n;
  }
  return true;
}

}  // namespace

std::size_t utf8_sequence(std::string_view text, std::size_t i, std::uint32_t& code) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char b0 = byte(i);
  if (b0 < 0x80) {
    code = b0;
    return 1;
  }
  std::size_t length;
  std::uint32_t min;
  if (b0 >= 0xC2 && b0 <= 0xDF) length = 2, min = 0x80, code = b0 & 0x1F;
  else if (b0 >= 0xE0 && b0 <= 0xEF) length = 3, min = 0x800, code = b0 & 0x0F;
  else if (b0 >= 0xF0 && b0 <= 0xF4) length = 4, min = 0x10000, code = b0 & 0x07;
  else return 0;
  if (i + length > text.size()) return 0;
  for (std::size_t k = 1; k < length; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    code = (code << 6) | (byte(i + k) & 0x3F);
  }
  if (code < min || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return 0;
  return length;
}

void check_relative_path(std::string_view path, const std::string& field, const RelativePathRules& rules) {
  const auto refuse = [&](const std::string& why) {
    throw Error(ErrorCode::ValidationError, rules.subject + why, field);
  };
  if (path.empty()) {
    if (rules.allow_empty) return;
    refuse("is empty");
  }
  if (rules.max_bytes && path.size() > rules.max_bytes)
    refuse("is too long (more than " + std::to_string(rules.max_bytes) + " bytes)");
  for (std::size_t i = 0; i < path.size(); ++i) {
    const auto c = static_cast<unsigned char>(path[i]);
    if (c < 0x20 || c == 0x7F) {
      char code[8];
      std::snprintf(code, sizeof code, "0x%02X", c);
      refuse("must not contain control characters (found " + std::string(code) + " at byte " + std::to_string(i) + ")");
    }
    if (c == '\\') refuse("must not contain a backslash (use '/' between folders)");
  }
  if (rules.require_utf8 && !is_plain_utf8(path)) refuse("must be valid UTF-8 text without control characters");
  const std::filesystem::path parsed{std::string(path)};
  if (parsed.is_absolute() || parsed.has_root_path() || path.front() == '/') refuse("must be relative to " + rules.root);
  for (const auto& part : parsed)
    if (part == "..") refuse("must not leave " + rules.root + " ('..')");
  if (!rules.allow_folders && path.find('/') != std::string_view::npos)
    refuse("must be a plain file name in " + rules.root + " (no '/')");
}

void check_save_path(std::string_view save_path, const std::string& field) {
  RelativePathRules rules;
  rules.root = "output_root";
  rules.allow_empty = true;
  check_relative_path(save_path, field, rules);
}

}  // namespace sdxlhost::sdk
