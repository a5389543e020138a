#pragma once
/// @file topology.hpp
/// What the gateway and the workers agree on over the broker (docs/scale-out.md):
///  - `cluster.jobs_queue`: durable classic queue with x-max-priority 2; one message per job: the
///    client's line as body, message_id = the gateway's job key, correlation_id = request_id,
///    reply_to = the gateway's reply queue, priority (low 0, normal 1, high 2), expiration =
///    metadata.timeout, persistent.
///  - the gateway's reply queue (durable, x-expires): worker -> gateway messages whose
///    correlation_id is the job key and whose type says what they are (kStarted, kProgress,
///    kResponse); the body of progress and response is the wire line for the client.
///  - `cluster.cancel_exchange` (fanout): {"key", "request_id"} of a job to stop, to every worker.
///  - `cluster.heartbeat_exchange` (fanout): each worker's heartbeat (what it serves) to every
///    gateway.

#include <string>

#include "host/cluster/amqp.hpp"
#include "host/config/host_config.hpp"
#include "host/runtime/job.hpp"

namespace sdxlhost::host::cluster {

/// basic.properties type of the worker -> gateway messages.
inline constexpr const char* kStarted = "started";    ///< a worker took the job (body: {"worker"})
inline constexpr const char* kProgress = "progress";  ///< a progress line for the client
inline constexpr const char* kResponse = "response";  ///< the final response line for the client
/// The wire `error_code` of a gateway that cannot reach its broker (or has no live worker for a
/// model message); retry later. Not an sdk::ErrorCode: only a gateway answers it, no plugin can
/// raise it.
inline constexpr const char* kUnavailable = "UNAVAILABLE";
/// x-max-priority of the jobs queue (classic queues; quorum queues have none in RabbitMQ 3.10).
inline constexpr int kMaxPriority = 2;

/// AMQP priority of a queue level (high 2, normal 1, low 0).
int amqp_priority(runtime::Priority priority);

/// Declares the jobs queue and both exchanges (idempotent; the same arguments everywhere, or the
/// broker refuses with PRECONDITION_FAILED).
void declare_topology(AmqpConnection& connection, std::uint16_t channel, const ClusterSettings& settings);

/// `cluster.node_name`, or "<hostname>-<pid>" when it is empty.
std::string node_name(const ClusterSettings& settings);

/// Seconds since `since` (steady clock).
double seconds_since(runtime::Clock::time_point since);

}  // namespace sdxlhost::host::cluster
