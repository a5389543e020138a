#pragma once
/// @file pipe_server.hpp
/// The named-pipe server: a Boost.Asio local stream acceptor (Unix socket on Linux, a named pipe
/// on Windows) serving many clients at once. Each client is a session that reads NDJSON lines
/// and writes the lines sent to it in order (writes serialised on the session's strand).
/// Thread-safety: start/stop from the owner's thread; the handler is called on the io_context's
/// thread(s); Connection::send from any thread.

#include <cstddef>
#include <memory>
#include <string>

#include "host/transport/connection.hpp"
#include "host/transport/transport.hpp"

namespace boost::asio {
class io_context;
}

namespace sdxlhost::host::transport {

/// Settings of the pipe server.
struct PipeServerSettings {
  std::string endpoint;           ///< socket path (Linux) or \\.\pipe\name (Windows); see pipe_path.hpp
  unsigned socket_mode = 0600;    ///< permission bits of the socket file (Linux)
  std::size_t max_line_bytes = 64u * 1024u * 1024u;  ///< longer lines -> on_oversized
  /// A client with more than this many bytes of lines queued for it (it does not read) is
  /// disconnected, with a warning in the log. A single line to a client with nothing queued is
  /// always accepted, however long.
  std::size_t max_backlog_bytes = 256u * 1024u * 1024u;
};

/// Accepts clients on one endpoint and runs a session per client.
class PipeServer : public Transport {
 public:
  /// Serves on `io` (which the owner runs); `handler` must outlive the server and its sessions.
  PipeServer(boost::asio::io_context& io, PipeServerSettings settings, MessageHandler& handler);
  /// Stops serving (see stop()).
  ~PipeServer() override;
  PipeServer(const PipeServer&) = delete;
  PipeServer& operator=(const PipeServer&) = delete;

  /// Removes a stale socket file, binds, sets the mode, listens and starts accepting.
  /// Throws sdk::Error(InternalError) when the endpoint is in use by a live server or cannot
  /// be bound. A pipe never ends on its own: `on_input_closed` is not called.
  void start(std::function<void()> on_input_closed = {}) override;
  /// Stops accepting, closes every session (pending writes are flushed first) and removes the
  /// socket file. Safe to call twice; must run on the io_context thread or after it stopped.
  void stop() override;
  /// Changes the line limit for lines started from now on (reload_config).
  void set_max_line_bytes(std::size_t bytes) override;
  /// Number of connected clients.
  std::size_t client_count() const override;
  /// The endpoint being served.
  const std::string& endpoint() const;

 private:
  class Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace sdxlhost::host::transport
