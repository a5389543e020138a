#pragma once
/// @file stdio_channel.hpp
/// `--stdio` mode: one client, the parent process, talking NDJSON over stdin/stdout. Lines are
/// read on a thread of their own and handed to the handler on the io_context (like socket
/// lines). When stdin ends, `on_end` runs (the host finishes the work it has, then exits). Logs go to stderr, never stdout.

#include <cstddef>
#include <functional>
#include <memory>
#include <thread>

#include "host/transport/connection.hpp"

namespace boost::asio {
class io_context;
}

namespace sdxlhost::host::transport {

/// Serves one client over two file descriptors (stdin/stdout by default).
class StdioChannel {
 public:
  StdioChannel(boost::asio::io_context& io, MessageHandler& handler, std::size_t max_line_bytes,
               int input_fd = 0, int output_fd = 1);
  ~StdioChannel();
  StdioChannel(const StdioChannel&) = delete;
  StdioChannel& operator=(const StdioChannel&) = delete;

  /// Starts the reader thread. `on_end` runs on the io_context once input has ended.
  void start(std::function<void()> on_end);
  /// The connection lines are answered on.
  std::shared_ptr<Connection> connection() const;

 private:
  class Output;
  void read_loop(std::function<void()> on_end);

  boost::asio::io_context& io_;
  MessageHandler& handler_;
  std::size_t max_line_bytes_;
  int input_fd_;
  std::shared_ptr<Output> output_;
  std::thread reader_;
};

}  // namespace sdxlhost::host::transport
