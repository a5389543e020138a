#pragma once
/// @file transport.hpp
/// What `serve` runs the host behind: one transport that brings clients' messages to the
/// protocol dispatcher and carries the answers back. The pipe server, stdio mode and a cluster
/// worker's broker consumer (host/cluster/worker.hpp) implement it; serve picks one from the
/// config and the command line and then treats them alike (cli/serve_command.cpp).
/// Thread-safety: start/stop from the owner's thread (stop also from the I/O thread);
/// client_count and connected from any thread.

#include <cstddef>
#include <functional>

namespace sdxlhost::host::transport {

/// A source of client messages and a way back to the clients.
class Transport {
 public:
  virtual ~Transport() = default;
  /// Starts serving. `on_input_closed` runs once if the input ends for good on its own (stdin
  /// closed); the pipe and the broker never end on their own and never call it.
  virtual void start(std::function<void()> on_input_closed = {}) = 0;
  /// Stops taking messages and lets go of the clients. Safe more than once.
  virtual void stop() = 0;
  /// Clients connected now (`status.clients`, the clients metric).
  virtual std::size_t client_count() const = 0;
  /// limits.max_message_bytes changed (reload_config); transports without line framing ignore it.
  virtual void set_max_line_bytes(std::size_t bytes) { (void)bytes; }
  /// False while the transport cannot receive anything (a worker without its broker): /readyz.
  virtual bool connected() const { return true; }
};

}  // namespace sdxlhost::host::transport
