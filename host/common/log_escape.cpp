#include "host/common/log_escape.hpp"

#include <cstdint>
#include <cstdio>

#include "sdxlhost/sdk/relative_path.hpp"

namespace sdxlhost::host {
namespace {

using sdk::utf8_sequence;  // the SDK decodes UTF-8 for the path checks too

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
