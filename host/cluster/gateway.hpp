#pragma once
/// @file gateway.hpp
/// cluster.role = gateway: the JobForwarder that publishes validated jobs to the broker's jobs
/// queue and relays the workers' progress and final responses to the client connection that
/// asked. Exactly one final response per job: the first final for a job key wins, later ones
/// (a redelivered job that ran twice) are dropped and counted. The gateway also answers a job
/// itself when it times out, is cancelled while queued, or its client goes away.
///
/// One broker thread owns the two AMQP connections (publisher with confirms; consumer of the
/// reply queue and of the workers' heartbeats) and reconnects with exponential backoff
/// (broker_loop.hpp, shared with the worker).
/// Thread-safety: the JobForwarder methods may be called from any thread; they only touch the
/// in-flight table and the outbox under one mutex.

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "host/cluster/amqp.hpp"
#include "host/config/host_config.hpp"
#include "host/runtime/job_forwarder.hpp"

namespace sdxlhost::host::cluster {

/// Publishes jobs, relays answers, tracks live workers.
class Gateway : public runtime::JobForwarder {
 public:
  /// Reads cluster.*, queue.max_pending and pipe_name (the default reply queue's name).
  explicit Gateway(const HostConfig& config);
  /// Stops the broker thread.
  ~Gateway() override;
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  /// Starts the broker thread (it connects, and keeps reconnecting while the broker is down).
  void start();
  /// True while connected to the broker.
  bool connected() const { return connected_.load(); }

  // ---- runtime::JobForwarder ------------------------------------------------------------------
  void forward(runtime::ForwardedJob job) override;
  std::string cancel(const std::string& request_id) override;
  void drop_connection(std::uint64_t connection_id) override;
  void describe_status(nlohmann::json& status) const override;
  void describe_capabilities(nlohmann::json& capabilities) const override;
  void describe_models(nlohmann::json& models) const override;
  bool ready() const override;
  void shutdown() override;

 private:
  /// A job published (or about to be) and not answered yet.
  struct InFlight {
    runtime::ForwardedJob job;
    std::string key;  ///< message_id on the broker: unique per gateway process and job
    runtime::Clock::time_point enqueued_at = runtime::Clock::now();
    runtime::Clock::time_point started_at{};
    bool has_deadline = false;
    runtime::Clock::time_point deadline{};
    bool published = false;  ///< the broker confirmed it
    bool running = false;    ///< a worker said it took it
    std::string worker;
    int attempts = 0;        ///< how many times a worker took it (> 1: redelivered)
    std::string stage;
    int step = 0;
    int total_steps = 0;
    /// every_worker jobs (load_model / unload_model): who must answer, and who did.
    std::set<std::string> expected;
    std::map<std::string, nlohmann::json> answers;
  };
  /// What the last heartbeat of a worker said.
  struct WorkerState {
    nlohmann::json heartbeat;
    runtime::Clock::time_point seen;
  };
  /// A message for the broker thread to publish.
  struct Outgoing {
    bool is_job = false;  ///< a job (confirmed, answered UNAVAILABLE if it cannot go) or a cancel
    bool to_every_worker = false;  ///< a job for every worker: on the fanout exchange, not the queue
    std::string key;
    std::string body;
    MessageProperties properties;
  };

  void broker_loop();
  /// One round while connected: publish the outbox, take deliveries, expire deadlines.
  void serve_once();
  void connect();
  void disconnect(const std::string& why);
  void publish_outbox();
  void on_delivery(const Delivery& delivery);
  void on_reply(const Delivery& delivery);
  void on_heartbeat(const Delivery& delivery);
  void expire_deadlines();
  /// Removes the job and answers its client with `error` (nothing when it is gone already).
  void answer_error(const std::string& key, const sdk::Error& error);
  /// Removes the job of `key` from the tables into `job`; false when it is no longer there
  /// (answered already). Takes mutex_.
  bool take_job(const std::string& key, runtime::ForwardedJob& job);
  /// Removes the job and answers its client UNAVAILABLE with `message`.
  void answer_unavailable(const std::string& key, const std::string& message);
  /// An every_worker job's answer once all its workers answered (or left): the first failure
  /// as it came, or the first success with `workers` and the combined loaded/unloaded. Empty
  /// while answers are missing. Caller holds mutex_.
  std::string combined_answer_locked(InFlight& job, const std::set<std::string>& live) const;
  /// The loaded-model stats of the live workers as one (status.models). Caller holds mutex_.
  nlohmann::json cluster_cache_locked() const;
  /// Queues a cancel for every worker (caller holds mutex_).
  void queue_cancel_locked(const InFlight& job);
  /// Live workers' heartbeats (caller holds mutex_).
  std::vector<nlohmann::json> live_workers_locked() const;

  ClusterSettings settings_;
  BrokerAddress broker_;
  std::size_t max_pending_;
  std::string node_;
  std::string reply_queue_;
  std::string key_prefix_;

  // Broker thread only.
  std::unique_ptr<AmqpConnection> publisher_;
  std::unique_ptr<AmqpConnection> consumer_;

  mutable std::mutex mutex_;
  std::map<std::string, InFlight> jobs_;          ///< by key
  std::map<std::string, std::string> keys_;       ///< request_id -> key
  std::map<std::string, WorkerState> workers_;    ///< by node name
  std::deque<Outgoing> outbox_;
  std::uint64_t next_sequence_ = 0;
  std::string last_error_;
  std::uint64_t duplicates_dropped_ = 0;
  std::uint64_t redeliveries_ = 0;
  std::uint64_t reconnects_ = 0;

  std::atomic<bool> connected_{false};
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace sdxlhost::host::cluster
