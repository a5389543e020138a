#pragma once
/// @file log_escape.hpp
/// Makes text from a client safe to write to a log line: one record stays one line and the log
/// stays valid UTF-8, whatever the client sent.

#include <string>
#include <string_view>

namespace sdxlhost::host {

/// `text` with C0 controls and DEL written as `\n`, `\r`, `\t` or `\xHH`, C1 controls and the
/// Unicode line/paragraph separators as `\u0085`/`\u2028`/`\u2029`, a backslash as `\\`, and each
/// byte that is not part of well-formed UTF-8 (RFC 3629: no overlongs, no surrogates, nothing
/// above U+10FFFF) as `\xHH`. Valid printable UTF-8 is kept as is.
std::string escape_for_log(std::string_view text);

/// True when escape_for_log(text) would change `text`.
bool needs_log_escape(std::string_view text);

}  // namespace sdxlhost::host
