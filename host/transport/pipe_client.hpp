#pragma once
/// @file pipe_client.hpp
/// A small blocking client of the pipe (used by `sdxl-host send` and the tests): connect, write
/// lines, read lines with a timeout. Linux: the Unix socket; Windows: the named pipe.
/// Thread-safety: one thread per client, or one writer and one reader.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace sdxlhost::host::transport {

/// A connection to a serving host.
class PipeClient {
 public:
  /// Connects to `endpoint` (see pipe_endpoint()). Throws std::runtime_error on failure.
  explicit PipeClient(const std::string& endpoint);
  ~PipeClient();
  PipeClient(const PipeClient&) = delete;
  PipeClient& operator=(const PipeClient&) = delete;

  /// Writes raw bytes. Returns false when the host closed the connection.
  bool write(std::string_view bytes);
  /// Writes `line` plus a newline.
  bool send_line(std::string_view line);
  /// The next line (without its newline), or nullopt on timeout or when the host closed.
  std::optional<std::string> read_line(std::chrono::milliseconds timeout);
  /// True after the host closed the connection (seen by read_line).
  bool closed() const { return closed_; }
  /// Closes the connection now.
  void close();

 private:
  std::string buffer_;
  bool closed_ = false;
#if defined(_WIN32)
  void* handle_ = nullptr;
#else
  int fd_ = -1;
#endif
};

}  // namespace sdxlhost::host::transport
