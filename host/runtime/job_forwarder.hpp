#pragma once
/// @file job_forwarder.hpp
/// Where a gateway host sends the jobs it validated instead of running them on its own
/// executors (cluster.role = gateway; host/cluster/gateway.hpp implements it). The dispatcher parses,
/// validates and plans exactly as a standalone host does, then hands the job over here; the
/// forwarder answers the client (progress and one final response) on the job's connection.
/// Thread-safety: every method may be called from any thread.

#include <cstdint>
#include <memory>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "host/runtime/job.hpp"
#include "host/transport/connection.hpp"

namespace sdxlhost::host::runtime {

/// A validated job on its way to a worker.
struct ForwardedJob {
  std::string request_id;
  std::string kind;  ///< "generation", an image message's type, "preprocess" (the `status` job kinds)
  Priority priority = Priority::Normal;
  double timeout_s = 0;  ///< metadata.timeout (queue wait + run); <= 0: none
  std::string line;      ///< the client's line as it arrived: the worker parses it again
  /// What a worker must serve to run it: the planned stages' features ("test_generate",
  /// ...) and "preprocessor:<name>" for a preprocess job.
  std::set<std::string> features;
  std::shared_ptr<transport::Connection> connection;  ///< where progress and the answer go
  std::vector<std::string> warnings;  ///< the gateway's parse warnings (the worker's answer has its own)
  /// load_model / unload_model: every live worker runs it (their model caches), and the answer
  /// comes once all of them answered.
  bool every_worker = false;
};

/// Takes validated jobs to workers and relays their answers.
class JobForwarder {
 public:
  virtual ~JobForwarder() = default;
  /// Takes the job (and answers it, in the end), or throws sdk::Error: FEATURE_DISABLED (no live
  /// worker serves a feature it needs), QUEUE_FULL, VALIDATION_ERROR (request id in flight). A
  /// job that cannot be handed over (no broker) is taken and answered UNAVAILABLE at once.
  virtual void forward(ForwardedJob job) = 0;
  /// Cancels an in-flight job: returns "queued" or "running" (the state it was in), or "" when
  /// no such job is in flight.
  virtual std::string cancel(const std::string& request_id) = 0;
  /// The client went away: its in-flight jobs are cancelled and their answers dropped.
  virtual void drop_connection(std::uint64_t connection_id) = 0;
  /// Replaces the queue/running/executors/models of a `status` answer with the cluster's and
  /// adds `cluster` (broker, workers).
  virtual void describe_status(nlohmann::json& status) const = 0;
  /// Adds `cluster` (workers and what each serves) to a `capabilities` answer.
  virtual void describe_capabilities(nlohmann::json& capabilities) const = 0;
  /// Marks as loaded, in a `list_models` answer, what any live worker has loaded, and adds
  /// `cluster.loaded` (each worker's loaded models).
  virtual void describe_models(nlohmann::json& models) const = 0;
  /// Connected to the broker with at least one live worker.
  virtual bool ready() const = 0;
  /// Stops: in-flight requests are answered SHUTTING_DOWN (their jobs stay queued on the broker).
  virtual void shutdown() = 0;
};

}  // namespace sdxlhost::host::runtime
