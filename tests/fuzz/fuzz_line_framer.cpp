// libFuzzer target: the NDJSON line framer fed the input in chunks whose sizes come from the
// input's first bytes; checks that the pending buffer never exceeds the limit (+1 for a '\r')
// and that every delivered line is within the limit and holds no newline. (It found that a line
// of exactly limit + 1 bytes without a '\r' was delivered; fixed in line_framer.cpp.)
#include <cstdint>
#include <string>
#include <string_view>

#include "host/transport/line_framer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::size_t limit = 1 + data[0] % 64;
  const std::size_t chunk = 1 + data[1] % 17;
  std::size_t delivered = 0;
  sdxlhost::host::transport::LineFramer framer(
      limit,
      [&](std::string&& line) {
        if (line.size() > limit || line.find('\n') != std::string::npos) __builtin_trap();
        delivered += line.size();
      },
      [](std::size_t) {});
  const std::string_view rest(reinterpret_cast<const char*>(data) + 2, size - 2);
  for (std::size_t at = 0; at < rest.size(); at += chunk) {
    framer.feed(rest.substr(at, chunk));
    if (framer.pending_bytes() > limit + 1) __builtin_trap();  // + a '\r' that may precede '\n'
  }
  if (delivered > rest.size()) __builtin_trap();
  return 0;
}
