#include "host/transport/line_framer.hpp"

namespace sdxlhost::host::transport {

LineFramer::LineFramer(std::size_t max_line_bytes, LineFn on_line, OversizedFn on_oversized)
    : max_line_bytes_(max_line_bytes), on_line_(std::move(on_line)), on_oversized_(std::move(on_oversized)) {}

void LineFramer::feed(std::string_view bytes) {
  while (!bytes.empty()) {
    std::size_t newline = bytes.find('\n');
    std::string_view chunk = bytes.substr(0, newline);
    if (!skipping_) {
      if (partial_.size() + chunk.size() > max_line_bytes_ + 1) {  // +1: a '\r' before '\n'
        std::size_t seen = partial_.size() + chunk.size();
        partial_.clear();
        partial_.shrink_to_fit();
        skipping_ = true;
        on_oversized_(seen);
      } else {
        partial_.append(chunk);
      }
    }
    if (newline == std::string_view::npos) return;
    finish_line();
    bytes.remove_prefix(newline + 1);
  }
}

void LineFramer::finish_line() {
  if (skipping_) {
    skipping_ = false;
    return;
  }
  if (!partial_.empty() && partial_.back() == '\r') partial_.pop_back();
  if (partial_.size() > max_line_bytes_) {  // max + 1 bytes are buffered for a '\r' that did not come
    const std::size_t seen = partial_.size();
    partial_.clear();
    on_oversized_(seen);
    return;
  }
  std::string line;
  line.swap(partial_);
  if (line.find_first_not_of(" \t") == std::string::npos) return;  // blank lines are keep-alives
  on_line_(std::move(line));
}

}  // namespace sdxlhost::host::transport
