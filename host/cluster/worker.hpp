#pragma once
/// @file worker.hpp
/// cluster.role = worker: the transport that feeds the host from the broker instead of a pipe.
/// Each job message carries the client's original line; it goes to the protocol dispatcher (on
/// its request thread, like a pipe line) with a JobSink of its own that encodes every event
/// (progress, the final response) as the client's wire line and publishes it to the gateway's
/// reply queue. The final response is published with a
/// publisher confirm, and only then is the job message acknowledged: a worker that dies before
/// that leaves it unacknowledged, and the broker gives it to another worker. So a worker behaves
/// exactly as a standalone host does; only the transport differs.
///
/// Also: consumes with prefetch = queue.executors (1 by default: a busy GPU takes no more),
/// listens to the cancel fanout (cancels a running job, drops a cancelled one that arrives
/// later), heartbeats what it serves every cluster.heartbeat_s, stops taking jobs when the host
/// shuts down (a job refused with SHUTTING_DOWN goes back to the queue), and reconnects with
/// backoff (broker_loop.hpp). One broker thread owns the AMQP connections.
/// Thread-safety: start/stop from the owner's thread; connected() from any thread.

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "host/cluster/amqp.hpp"
#include "host/config/host_config.hpp"
#include "host/runtime/host_service.hpp"
#include "host/transport/transport.hpp"

namespace sdxlhost::host::cluster {

/// Consumes jobs for one host.
class Worker : public transport::Transport {
 public:
  /// `host` must outlive the worker.
  Worker(const HostConfig& config, runtime::HostService& host);
  /// Stops (see stop()).
  ~Worker() override;
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  /// Starts the broker thread (the broker's input never ends on its own).
  void start(std::function<void()> on_input_closed = {}) override;
  /// Publishes what is still waiting to go (answers of jobs that finished), says it is leaving,
  /// closes the connections and joins the broker thread. Unacknowledged jobs go back to the queue.
  void stop() override;
  /// A worker has no clients of its own (the gateways have them).
  std::size_t client_count() const override { return 0; }
  /// True while connected to the broker.
  bool connected() const override { return connected_.load(); }

 private:
  class ReplySink;
  struct Mailbox;
  /// A line for the gateway (or, for a final, what to do with the job message).
  struct Outgoing {
    std::uint64_t generation = 0;  ///< the connection the job message came on
    std::uint64_t delivery_tag = 0;
    std::string key;
    std::string reply_to;
    std::string type;  ///< kStarted | kProgress | kResponse
    std::string body;
    bool requeue = false;  ///< a final refused because this host is stopping: give the job back
    std::string error_code;  ///< of a final response that failed ("" on success)
  };
  /// A job message this worker holds (maybe several deliveries of the same key after a broker
  /// restart: all are acknowledged by its one answer).
  struct Active {
    std::string request_id;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> deliveries;  ///< (generation, tag)
  };

  void broker_loop();
  /// One round while connected: publish answers, stop consuming when the host stops,
  /// heartbeat, take what the broker delivered.
  void serve_once();
  void connect();
  void disconnect(const std::string& why);
  void publish_outbox();
  void on_delivery(const Delivery& delivery);
  void on_job(const Delivery& delivery);
  void on_cancel(const Delivery& delivery);
  void send_heartbeat(const std::string& state);
  /// Forgets cancelled/answered keys older than limits.max_timeout_s.
  void forget_old_keys();
  /// Hands a client line to the dispatcher, its events to `sink`.
  void post_line(std::shared_ptr<runtime::JobSink> sink, std::string line);

  ClusterSettings settings_;
  BrokerAddress broker_;
  std::string node_;
  int prefetch_;
  double cancelled_memory_s_;
  runtime::HostService& host_;

  // Broker thread only.
  std::unique_ptr<AmqpConnection> publisher_;
  std::unique_ptr<AmqpConnection> consumer_;
  std::string consumer_tag_;
  std::uint64_t generation_ = 0;
  runtime::Clock::time_point next_heartbeat_{};
  std::map<std::string, runtime::Clock::time_point> cancelled_;  ///< job keys cancelled, when
  /// Job keys answered here, when: a redelivery of one (after a broker restart) is acknowledged
  /// without running it again.
  std::map<std::string, runtime::Clock::time_point> answered_;

  std::map<std::string, Active> active_;  ///< by job key
  std::uint64_t jobs_done_ = 0;
  /// Lines from the jobs' sinks (executor threads) to the broker thread; shared with every
  /// ReplySink, so a late line after stop() lands nowhere harmful.
  std::shared_ptr<Mailbox> mailbox_;

  std::atomic<bool> connected_{false};
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace sdxlhost::host::cluster
