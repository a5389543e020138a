#pragma once
/// @file stdio_channel.hpp
/// `--stdio` mode: one client, the parent process, talking NDJSON over stdin/stdout. Lines are
/// read on a thread of their own and handed to the handler on the io_context (like socket
/// lines). When stdin ends, `on_end` runs (the host finishes the work it has, then exits). Logs go to stderr, never stdout.
/// The reader waits on stdin and on a wake pipe, so stop() and the destructor end it at once,
/// even while more input keeps arriving; the destructor joins it (it never outlives the channel).

#include <cstddef>
#include <functional>
#include <memory>
#include <thread>

#include "host/transport/connection.hpp"
#include "host/transport/transport.hpp"

namespace boost::asio {
class io_context;
}

namespace sdxlhost::host::transport {

/// Serves one client over two file descriptors (stdin/stdout by default).
class StdioChannel : public Transport {
 public:
  StdioChannel(boost::asio::io_context& io, MessageHandler& handler, std::size_t max_line_bytes,
               int input_fd = 0, int output_fd = 1);
  ~StdioChannel() override;
  StdioChannel(const StdioChannel&) = delete;
  StdioChannel& operator=(const StdioChannel&) = delete;

  /// Starts the reader thread. `on_end` runs on the io_context once input has ended (not when
  /// the reader was stopped).
  void start(std::function<void()> on_end = {}) override;
  /// Tells the reader to stop reading (lines not yet handed over are dropped). Does not wait;
  /// safe from any thread, more than once.
  void stop() override;
  /// One client: the parent process.
  std::size_t client_count() const override { return 1; }
  /// The connection lines are answered on.
  std::shared_ptr<Connection> connection() const;

 private:
  class Output;
  void read_loop(std::function<void()> on_end);
  /// Waits until input or a stop request is there; false when the reader must end.
  bool wait_for_input();

  boost::asio::io_context& io_;
  MessageHandler& handler_;
  std::size_t max_line_bytes_;
  int input_fd_;
  std::shared_ptr<Output> output_;
  int wake_read_ = -1;   // the reader polls it: readable once stop() wrote to wake_write_
  int wake_write_ = -1;
  std::thread reader_;
};

}  // namespace sdxlhost::host::transport
