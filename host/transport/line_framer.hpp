#pragma once
/// @file line_framer.hpp
/// NDJSON framing: bytes in, complete lines out. A line longer than the limit is reported once
/// (so the client gets MESSAGE_TOO_LARGE) and its bytes are skipped up to the next newline, so
/// the connection stays usable and memory stays bounded by the limit.
/// Thread-safety: none; one framer per connection, fed by its reader.

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace sdxlhost::host::transport {

/// Splits a byte stream into lines ('\n'; a trailing '\r' is dropped).
class LineFramer {
 public:
  /// Called with each complete line (without its newline).
  using LineFn = std::function<void(std::string&& line)>;
  /// Called once per oversized line with the number of bytes seen when it was refused.
  using OversizedFn = std::function<void(std::size_t bytes)>;

  /// Lines longer than `max_line_bytes` go to `on_oversized` instead of `on_line`.
  LineFramer(std::size_t max_line_bytes, LineFn on_line, OversizedFn on_oversized);

  /// Feeds bytes; calls the callbacks for every line they complete.
  void feed(std::string_view bytes);
  /// Changes the limit (takes effect for the line being read).
  void set_max_line_bytes(std::size_t max) { max_line_bytes_ = max; }
  /// Bytes of the unfinished line held now.
  std::size_t pending_bytes() const { return partial_.size(); }

 private:
  void finish_line();

  std::size_t max_line_bytes_;
  LineFn on_line_;
  OversizedFn on_oversized_;
  std::string partial_;
  bool skipping_ = false;  // inside an oversized line: drop bytes until '\n'
};

}  // namespace sdxlhost::host::transport
