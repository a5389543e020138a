#pragma once
/// @file connection.hpp
/// What the rest of the host sees of a client: a connection it can answer on, and the handler
/// interface the transports call. Both the pipe server and stdio mode implement these.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace sdxlhost::host::transport {

/// One client. Thread-safety: `send`, `close` and `is_open` may be called from any thread;
/// lines sent from one thread arrive in the order sent.
class Connection {
 public:
  virtual ~Connection() = default;
  /// Unique id of this connection within the process (for logs and job ownership).
  virtual std::uint64_t id() const = 0;
  /// Queues one line (a newline is appended). Dropped silently once the connection is closed.
  virtual void send(std::string line) = 0;
  /// False once the peer went away or close() was called.
  virtual bool is_open() const = 0;
  /// Closes the connection after the lines already queued are written.
  virtual void close() = 0;
};

/// What a transport calls. Calls come from the transport's I/O thread, one at a time.
class MessageHandler {
 public:
  virtual ~MessageHandler() = default;
  /// A complete line arrived on `connection`.
  virtual void on_line(const std::shared_ptr<Connection>& connection, std::string&& line) = 0;
  /// A line longer than the limit arrived (its bytes are being skipped).
  virtual void on_oversized(const std::shared_ptr<Connection>& connection, std::size_t bytes) = 0;
  /// The peer went away (called once per connection).
  virtual void on_disconnect(const std::shared_ptr<Connection>& connection) = 0;
};

/// A fresh connection id (process-wide counter).
std::uint64_t next_connection_id();

}  // namespace sdxlhost::host::transport
