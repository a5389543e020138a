#include "host/common/log_escape.hpp"

#include <cstdint>
#include <cstdio>

namespace sdxlhost::host {
namespace {

/// Length of the well-formed UTF-8 sequence at `text[i]` (1..4), or 0 when it is not one.
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

bool is_special(std::uint32_t code) {
  return code < 0x20 || code == 0x7F || code == '\\' || (code >= 0x80 && code <= 0x9F) || code == 0x2028 ||
         code == 0x2029;
}

}  // namespace

bool needs_log_escape(std::string_view text) {
  for (std::size_t i = 0; i < text.size();) {
    std::uint32_t code = 0;
    const std::size_t n = utf8_sequence(text, i, code);
    if (n == 0 || is_special(code)) return true;
    i += n;
  }
  return false;
}

std::string escape_for_log(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 8);
  char buffer[12];
  for (std::size_t i = 0; i < text.size();) {
    std::uint32_t code = 0;
    const std::size_t n = utf8_sequence(text, i, code);
    if (n == 0) {
      std::snprintf(buffer, sizeof buffer, "\\x%02X", static_cast<unsigned char>(text[i]));
      out += buffer;
      ++i;
      continue;
    }
    if (!is_special(code)) {
      out.append(text.data() + i, n);
    } else if (code == '\n') {
      out += "\\n";
    } else if (code == '\r') {
      out += "\\r";
    } else if (code == '\t') {
      out += "\\t";
    } else if (code == '\\') {
      out += "\\\\";
    } else if (code < 0x80) {
      std::snprintf(buffer, sizeof buffer, "\\x%02X", static_cast<unsigned>(code));
      out += buffer;
    } else {
      std::snprintf(buffer, sizeof buffer, "\\u%04X", static_cast<unsigned>(code));
      out += buffer;
    }
    i += n;
  }
  return out;
}

}  // namespace sdxlhost::host
