#include "host/cluster/broker_loop.hpp"

#include <algorithm>
#include <chrono>
#include <thread>

#include "host/common/logging.hpp"

namespace sdxlhost::host::cluster {

void sleep_unless_stopping(const std::atomic<bool>& stopping, double seconds) {
  using Clock = std::chrono::steady_clock;
  const auto until = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  while (!stopping && Clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(20));
}

void run_broker_loop(const BrokerLoop& loop) {
  auto log = component_logger("cluster");
  double backoff = 0.1;
  while (!*loop.stopping) {
    if (!*loop.connected) {
      try {
        loop.connect();
        backoff = 0.1;
      } catch (const std::exception& error) {
        loop.disconnect(error.what());
        backoff = std::min(backoff * 2, loop.reconnect_max_s);
        log->warn("{}: broker {} unreachable ({}); next attempt in {:.1f} s", loop.role, loop.broker.display(),
                  error.what(), backoff);
        sleep_unless_stopping(*loop.stopping, backoff);
        continue;
      }
    }
    try {
      loop.serve_once();
    } catch (const AmqpError& error) {
      log->error("{}: lost the broker: {}", loop.role, error.what());
      loop.disconnect(error.what());
    }
  }
}

}  // namespace sdxlhost::host::cluster
