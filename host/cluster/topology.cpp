#include "host/cluster/topology.hpp"

#include <unistd.h>

namespace sdxlhost::host::cluster {

int amqp_priority(runtime::Priority priority) {
  switch (priority) {
    case runtime::Priority::High: return 2;
    case runtime::Priority::Normal: return 1;
    case runtime::Priority::Low: return 0;
  }
  return 1;
}

void declare_topology(AmqpConnection& connection, std::uint16_t channel, const ClusterSettings& settings) {
  QueueOptions jobs;
  jobs.durable = true;
  jobs.max_priority = kMaxPriority;
  connection.declare_queue(channel, settings.jobs_queue, jobs);
  connection.declare_exchange(channel, settings.cancel_exchange, "fanout", /*durable=*/true);
  connection.declare_exchange(channel, settings.heartbeat_exchange, "fanout", /*durable=*/true);
}

std::string node_name(const ClusterSettings& settings) {
  if (!settings.node_name.empty()) return settings.node_name;
  char host[256] = {0};
  if (::gethostname(host, sizeof(host) - 1) != 0) host[0] = '\0';
  return std::string(host[0] ? host : "host") + "-" + std::to_string(::getpid());
}

double seconds_since(runtime::Clock::time_point since) {
  return std::chrono::duration<double>(runtime::Clock::now() - since).count();
}

}  // namespace sdxlhost::host::cluster
