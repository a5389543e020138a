#pragma once
/// @file broker_loop.hpp
/// The broker thread's loop that the gateway and the worker share: connect, serve rounds until
/// the broker is lost, reconnect with exponential backoff (0.2 s doubling up to
/// cluster.reconnect_max_s), until the role stops. Each role supplies its own connect,
/// disconnect and one round of work; what it does after the loop (a worker's last flush) stays
/// with the role.
/// Thread-safety: run on the role's broker thread; `stopping` may be set from any thread.

#include <atomic>
#include <functional>
#include <string>

#include "host/cluster/amqp.hpp"

namespace sdxlhost::host::cluster {

/// What one role's broker loop does.
struct BrokerLoop {
  std::string role;                   ///< "gateway" | "worker": starts each log line
  BrokerAddress broker;               ///< for the log lines
  double reconnect_max_s = 10;        ///< cluster.reconnect_max_s: the longest wait between attempts
  const std::atomic<bool>* stopping = nullptr;   ///< the loop ends once it is true
  const std::atomic<bool>* connected = nullptr;  ///< set by `connect`, cleared by `disconnect`
  /// Opens the connections; throws (anything) when the broker cannot be reached.
  std::function<void()> connect;
  /// Drops the connections after a failure (`why`); must not throw.
  std::function<void(const std::string& why)> disconnect;
  /// One round of work while connected; throws AmqpError when the broker is lost.
  std::function<void()> serve_once;
};

/// Runs the loop until `*loop.stopping`; returns without disconnecting (the caller does).
void run_broker_loop(const BrokerLoop& loop);

/// Waits `seconds`, waking every 20 ms to return early once `stopping` is true.
void sleep_unless_stopping(const std::atomic<bool>& stopping, double seconds);

}  // namespace sdxlhost::host::cluster
