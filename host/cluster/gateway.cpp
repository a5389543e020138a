#include "host/cluster/gateway.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>

#include "host/cluster/broker_loop.hpp"
#include "host/cluster/topology.hpp"
#include "host/protocol/envelope.hpp"
#include "host/common/logging.hpp"
#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::host::cluster {
namespace {

using nlohmann::json;
using runtime::Clock;
using sdk::Error;
using sdk::ErrorCode;

constexpr std::uint16_t kJobsChannel = 1;    // publisher: confirmed job messages
constexpr std::uint16_t kControlChannel = 2; // publisher: cancels, declarations
constexpr std::uint16_t kRepliesChannel = 1;   // consumer: the reply queue
constexpr std::uint16_t kHeartbeatChannel = 2; // consumer: worker heartbeats
constexpr double kPollSeconds = 0.02;        // how long the broker thread waits for a delivery
constexpr double kConfirmTimeoutSeconds = 5.0;

std::string default_reply_queue(const HostConfig& config) {
  char host[256] = {0};
  if (::gethostname(host, sizeof(host) - 1) != 0 || !host[0]) std::snprintf(host, sizeof(host), "host");
  std::string pipe = config.pipe_name;
  std::replace(pipe.begin(), pipe.end(), '/', '_');
  return "sdxl.replies." + std::string(host) + "." + pipe;
}

std::string random_hex(int digits) {
  std::random_device random;
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < digits; ++i) out += kHex[random() % 16];
  return out;
}

/// The error response UNAVAILABLE (a wire code of gateways; see topology.hpp).
std::string unavailable_line(const std::string& request_id, const std::string& message,
                             const std::vector<std::string>& warnings) {
  json response = protocol::error_response(request_id, Error(ErrorCode::InternalError, message), warnings);
  response["error_code"] = kUnavailable;
  return protocol::to_line(response);
}

bool serves_all(const json& heartbeat, const std::set<std::string>& features) {
  const json served = heartbeat.value("features", json::array());
  for (const auto& feature : features)
    if (std::find(served.begin(), served.end(), feature) == served.end()) return false;
  return true;
}

std::string names_of(const std::set<std::string>& features) {
  std::string out;
  for (const auto& feature : features) out += (out.empty() ? "'" : ", '") + feature + "'";
  return out;
}

}  // namespace

Gateway::Gateway(const HostConfig& config)
    : settings_(config.cluster),
      broker_(parse_broker_url(config.cluster.broker, "cluster.broker")),
      max_pending_(config.queue.max_pending),
      node_(node_name(config.cluster)),
      reply_queue_(config.cluster.reply_queue.empty() ? default_reply_queue(config) : config.cluster.reply_queue),
      key_prefix_(node_ + "-" + random_hex(8) + "-") {}

Gateway::~Gateway() {
  stopping_ = true;
  if (thread_.joinable()) thread_.join();
}

void Gateway::start() {
  component_logger("cluster")->info("gateway {}: broker {}, jobs queue '{}', reply queue '{}'", node_,
                                    broker_.display(), settings_.jobs_queue, reply_queue_);
  thread_ = std::thread([this] { broker_loop(); });
}

// ---- the JobForwarder side (any thread) ------------------------------------------------------

void Gateway::forward(runtime::ForwardedJob job) {
  if (stopping_) throw Error(ErrorCode::ShuttingDown, "the host is shutting down");
  std::unique_lock<std::mutex> lock(mutex_);
  std::string unavailable;
  if (!connected_)
    unavailable = "the message broker " + broker_.display() + " is unreachable" +
                  (last_error_.empty() ? "" : " (" + last_error_ + ")") + "; the gateway keeps reconnecting, retry later";
  else if (job.every_worker && live_workers_locked().empty())
    unavailable = "no live worker to run " + job.kind + " on (none heartbeat in the last " +
                  std::to_string(static_cast<int>(settings_.worker_timeout_s)) + " s)";
  if (!unavailable.empty()) {  // answered here, at once: the job goes nowhere
    lock.unlock();
    component_logger("cluster")->info("[{}] refused: {} ({})", job.request_id, unavailable, kUnavailable);
    if (job.connection) job.connection->send(unavailable_line(job.request_id, unavailable, job.warnings));
    return;
  }
  if (keys_.count(job.request_id))
    throw Error(ErrorCode::ValidationError, "a job with this request_id is already queued or running", "request_id");
  std::size_t queued = 0;
  for (const auto& [key, entry] : jobs_) queued += entry.running ? 0 : 1;
  if (queued >= max_pending_)
    throw Error(ErrorCode::QueueFull, "queue is full (" + std::to_string(queued) +
                                          " jobs waiting, queue.max_pending = " + std::to_string(max_pending_) + ")");
  const auto live = live_workers_locked();
  // With no live worker the job waits on the broker for one; with live workers, one of them
  // must serve everything the job needs, or nobody ever could run it.
  if (!live.empty() && std::none_of(live.begin(), live.end(),
                                    [&](const json& worker) { return serves_all(worker, job.features); }))
    throw Error(ErrorCode::FeatureDisabled,
                "no live worker serves " + names_of(job.features) + " (" + std::to_string(live.size()) +
                    " live worker(s); enable the plugin on the workers)");

  InFlight entry;
  entry.key = key_prefix_ + std::to_string(++next_sequence_);
  if (job.every_worker) {  // not queued: every live worker gets it at once
    for (const auto& worker : live) entry.expected.insert(worker.value("node", ""));
    entry.running = true;
    entry.started_at = entry.enqueued_at;
    entry.worker = "every worker";
  }
  if (job.timeout_s > 0) {
    entry.has_deadline = true;
    entry.deadline = entry.enqueued_at +
                     std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(job.timeout_s));
  }
  Outgoing message;
  message.is_job = true;
  message.to_every_worker = job.every_worker;
  message.key = entry.key;
  message.body = job.line;
  message.properties.message_id = entry.key;
  message.properties.correlation_id = job.request_id;
  message.properties.reply_to = reply_queue_;
  message.properties.type = job.kind;
  message.properties.app_id = node_;
  message.properties.priority = amqp_priority(job.priority);
  message.properties.persistent = true;
  if (job.timeout_s > 0)  // the broker drops it once nobody could answer in time
    message.properties.expiration = std::to_string(static_cast<long long>(std::ceil(job.timeout_s * 1000.0)));
  component_logger("cluster")->info("[{}] forwarded as {} (priority {}, {} queued here)", job.request_id, entry.key,
                                    runtime::to_string(job.priority), queued + 1);
  keys_[job.request_id] = entry.key;
  entry.job = std::move(job);
  jobs_.emplace(entry.key, std::move(entry));
  outbox_.push_back(std::move(message));
}

std::string Gateway::cancel(const std::string& request_id) {
  std::string key, state;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = keys_.find(request_id);
    if (it == keys_.end()) return "";
    key = it->second;
    const InFlight& job = jobs_.at(key);
    queue_cancel_locked(job);
    state = job.running ? "running" : "queued";
  }
  component_logger("cluster")->info("[{}] cancel requested while {}", request_id, state);
  // A running job answers CANCELLED from its worker; a queued one is answered here, and the
  // worker that receives it later drops it (it heard the cancel).
  if (state == "queued") answer_error(key, Error(ErrorCode::Cancelled, "cancelled while queued"));
  return state;
}

void Gateway::drop_connection(std::uint64_t connection_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto it = jobs_.begin(); it != jobs_.end();) {
    if (it->second.job.connection && it->second.job.connection->id() == connection_id) {
      component_logger("cluster")->info("[{}] cancelled: client {} disconnected", it->second.job.request_id,
                                        connection_id);
      queue_cancel_locked(it->second);
      keys_.erase(it->second.job.request_id);
      it = jobs_.erase(it);
    } else {
      ++it;
    }
  }
}

void Gateway::describe_status(json& status) const {
  std::lock_guard<std::mutex> lock(mutex_);
  json queue = {{"depth", 0}, {"max_pending", max_pending_}, {"high", json::array()}, {"normal", json::array()},
                {"low", json::array()}};
  json running = json::array();
  std::size_t depth = 0;
  // Oldest first, as the local queue lists them.
  std::vector<const InFlight*> ordered;
  for (const auto& [key, job] : jobs_) ordered.push_back(&job);
  std::sort(ordered.begin(), ordered.end(),
            [](const InFlight* a, const InFlight* b) { return a->enqueued_at < b->enqueued_at; });
  for (const InFlight* job : ordered) {
    json described = {{"request_id", job->job.request_id},
                      {"kind", job->job.kind},
                      {"priority", runtime::to_string(job->job.priority)},
                      {"connection", job->job.connection ? job->job.connection->id() : 0}};
    if (!job->running) {
      queue[runtime::to_string(job->job.priority)].push_back(job->job.request_id);
      ++depth;
      continue;
    }
    described["stage"] = job->stage;
    described["step"] = job->step;
    described["total_steps"] = job->total_steps;
    described["elapsed_s"] = seconds_since(job->started_at);
    described["queued_s"] = std::chrono::duration<double>(job->started_at - job->enqueued_at).count();
    described["worker"] = job->worker;
    described["attempts"] = job->attempts;
    running.push_back(described);
  }
  queue["depth"] = depth;
  int executors = 0;
  json workers = json::array();
  for (const auto& worker : live_workers_locked()) {
    executors += worker.value("executors", 0);
    workers.push_back(worker);
  }
  status["queue"] = queue;
  status["running"] = running;
  status["models"] = cluster_cache_locked();
  status["executors"] = executors;
  status["cluster"] = {{"role", "gateway"},
                       {"node", node_},
                       {"broker", broker_.display()},
                       {"connected", connected_.load()},
                       {"last_error", last_error_},
                       {"jobs_queue", settings_.jobs_queue},
                       {"reply_queue", reply_queue_},
                       {"workers", workers},
                       {"in_flight", jobs_.size()},
                       {"duplicates_dropped", duplicates_dropped_},
                       {"redeliveries", redeliveries_},
                       {"reconnects", reconnects_}};
}

void Gateway::describe_capabilities(json& capabilities) const {
  std::lock_guard<std::mutex> lock(mutex_);
  json workers = json::array();
  for (const auto& worker : live_workers_locked())
    workers.push_back({{"node", worker.value("node", "")},
                       {"features", worker.value("features", json::array())},
                       {"plugins", worker.value("plugins", json::array())},
                       {"schedulers", worker.value("schedulers", json::array())},
                       {"preprocessors", worker.value("preprocessors", json::array())},
                       {"device", worker.value("device", "")},
                       {"executors", worker.value("executors", 0)}});
  json& codes = capabilities["error_codes"];  // a gateway also answers its own wire code
  if (codes.is_array() && std::find(codes.begin(), codes.end(), kUnavailable) == codes.end())
    codes.push_back(kUnavailable);
  capabilities["cluster"] = {{"role", "gateway"}, {"connected", connected_.load()}, {"workers", workers}};
}

void Gateway::describe_models(json& models) const {
  std::lock_guard<std::mutex> lock(mutex_);
  json loaded = json::object();
  std::set<std::string> loaded_somewhere;  // "kind/name"
  for (const auto& worker : live_workers_locked()) {
    const json cache = worker.value("models", json::object());
    loaded[worker.value("node", "")] = cache.value("models", json::array());
    for (const auto& model : cache.value("models", json::array()))
      loaded_somewhere.insert(model.value("kind", "") + "/" + model.value("name", ""));
  }
  for (auto& [kind, list] : models.items())
    if (list.is_array())
      for (auto& model : list)
        if (loaded_somewhere.count(kind + "/" + model.value("name", ""))) model["loaded"] = true;
  models["cluster"] = {{"loaded", loaded}};
}

bool Gateway::ready() const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!connected_) return false;
  for (const auto& worker : live_workers_locked())
    if (worker.value("ready", false)) return true;
  return false;
}

void Gateway::shutdown() {
  std::vector<std::string> keys;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& [key, job] : jobs_) keys.push_back(key);
  }
  for (const auto& key : keys)
    answer_error(key, Error(ErrorCode::ShuttingDown,
                            "the gateway is shutting down; the job stays on the broker and may still run, but its "
                            "answer cannot reach this connection"));
  stopping_ = true;
  if (thread_.joinable()) thread_.join();
}

// ---- helpers (callers hold mutex_ where the name says so) -------------------------------------

bool Gateway::take_job(const std::string& key, runtime::ForwardedJob& job) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = jobs_.find(key);
  if (it == jobs_.end()) return false;
  job = std::move(it->second.job);
  keys_.erase(job.request_id);
  jobs_.erase(it);
  return true;
}

void Gateway::answer_error(const std::string& key, const Error& error) {
  runtime::ForwardedJob job;
  if (!take_job(key, job)) return;
  component_logger("cluster")->info("[{}] answered here: {} ({})", job.request_id, error.what(),
                                    sdk::to_string(error.code()));
  if (job.connection) job.connection->send(protocol::to_line(protocol::error_response(job.request_id, error, job.warnings)));
}

void Gateway::answer_unavailable(const std::string& key, const std::string& message) {
  runtime::ForwardedJob job;
  if (!take_job(key, job)) return;
  component_logger("cluster")->info("[{}] answered here: {} ({})", job.request_id, message, kUnavailable);
  if (job.connection) job.connection->send(unavailable_line(job.request_id, message, job.warnings));
}

void Gateway::queue_cancel_locked(const InFlight& job) {
  Outgoing message;
  message.key = job.key;
  message.body = json{{"key", job.key}, {"request_id", job.job.request_id}}.dump();
  message.properties.app_id = node_;
  outbox_.push_back(std::move(message));
}

std::vector<json> Gateway::live_workers_locked() const {
  std::vector<json> live;
  for (const auto& [node, worker] : workers_) {
    if (seconds_since(worker.seen) > settings_.worker_timeout_s) continue;
    if (worker.heartbeat.value("state", "") == "leaving") continue;
    json described = worker.heartbeat;
    described["last_seen_s"] = seconds_since(worker.seen);
    live.push_back(std::move(described));
  }
  return live;
}

// ---- the broker thread -----------------------------------------------------------------------

void Gateway::broker_loop() {
  BrokerLoop loop;
  loop.role = "gateway";
  loop.broker = broker_;
  loop.reconnect_max_s = settings_.reconnect_max_s;
  loop.stopping = &stopping_;
  loop.connected = &connected_;
  loop.connect = [this] { connect(); };
  loop.disconnect = [this](const std::string& why) { disconnect(why); };
  loop.serve_once = [this] { serve_once(); };
  run_broker_loop(loop);
  disconnect("gateway stopping");
}

void Gateway::serve_once() {
  publish_outbox();
  // Drain what is waiting, then go back to the outbox.
  for (int i = 0; i < 64; ++i) {
    auto delivery = consumer_->next_delivery(i == 0 ? kPollSeconds : 0.0);
    if (!delivery) break;
    on_delivery(*delivery);
  }
  expire_deadlines();
}

void Gateway::connect() {
  publisher_ = std::make_unique<AmqpConnection>(broker_, 0, 2.0, node_ + " gateway publisher");
  publisher_->open_channel(kJobsChannel);
  publisher_->confirm_select(kJobsChannel);
  publisher_->open_channel(kControlChannel);
  declare_topology(*publisher_, kControlChannel, settings_);
  QueueOptions replies;
  replies.durable = true;  // answers published while this gateway reconnects wait for it
  replies.expires_ms = static_cast<long long>(settings_.reply_queue_expires_s * 1000);
  publisher_->declare_queue(kControlChannel, reply_queue_, replies);

  consumer_ = std::make_unique<AmqpConnection>(broker_, 10, 2.0, node_ + " gateway consumer");
  consumer_->open_channel(kRepliesChannel);
  consumer_->consume(kRepliesChannel, reply_queue_, /*no_ack=*/true);
  consumer_->open_channel(kHeartbeatChannel);
  QueueOptions heartbeats;
  heartbeats.exclusive = true;
  heartbeats.auto_delete = true;
  const std::string queue = consumer_->declare_queue(kHeartbeatChannel, "", heartbeats);
  consumer_->bind_queue(kHeartbeatChannel, queue, settings_.heartbeat_exchange);
  consumer_->consume(kHeartbeatChannel, queue, /*no_ack=*/true);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    last_error_.clear();
  }
  connected_ = true;
  component_logger("cluster")->info("gateway: connected to {}", broker_.display());
}

void Gateway::disconnect(const std::string& why) {
  const bool was_connected = connected_.exchange(false);
  publisher_.reset();
  consumer_.reset();
  std::vector<std::string> unsent;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    last_error_ = why;
    if (was_connected) ++reconnects_;
    for (const auto& message : outbox_)
      if (message.is_job) unsent.push_back(message.key);
    outbox_.clear();
  }
  // Jobs the broker confirmed stay in flight: they are safe in the durable queue and their
  // answers come through the durable reply queue once both sides are back.
  for (const auto& key : unsent)
    answer_unavailable(key, "lost the message broker " + broker_.display() + " before the job was handed over (" +
                                why + "); retry");
}

void Gateway::publish_outbox() {
  for (;;) {
    Outgoing message;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (outbox_.empty()) return;
      message = std::move(outbox_.front());
      outbox_.pop_front();
      if (message.is_job && !jobs_.count(message.key)) continue;  // cancelled or dropped before it went
    }
    if (!message.is_job) {
      publisher_->publish(kControlChannel, settings_.cancel_exchange, "", message.body, message.properties);
      continue;
    }
    try {
      if (message.to_every_worker)  // the fanout every worker listens to (it tells by `type`)
        publisher_->publish(kJobsChannel, settings_.cancel_exchange, "", message.body, message.properties);
      else
        publisher_->publish(kJobsChannel, "", settings_.jobs_queue, message.body, message.properties);
      publisher_->wait_confirm(kJobsChannel, kConfirmTimeoutSeconds);
    } catch (const AmqpError& error) {
      answer_unavailable(message.key, "the message broker " + broker_.display() + " did not take the job (" +
                                          error.what() + "); retry");
      throw;
    }
    std::lock_guard<std::mutex> lock(mutex_);
    if (auto it = jobs_.find(message.key); it != jobs_.end()) it->second.published = true;
  }
}

void Gateway::on_delivery(const Delivery& delivery) {
  if (delivery.channel == kHeartbeatChannel) on_heartbeat(delivery);
  else on_reply(delivery);
}

void Gateway::on_heartbeat(const Delivery& delivery) {
  json heartbeat = json::parse(delivery.body, nullptr, /*allow_exceptions=*/false);
  if (!heartbeat.is_object() || !heartbeat.contains("node")) return;
  const std::string node = heartbeat.value("node", "");
  std::lock_guard<std::mutex> lock(mutex_);
  auto& worker = workers_[node];
  if (worker.heartbeat.is_null()) component_logger("cluster")->info("gateway: worker {} joined", node);
  worker.heartbeat = std::move(heartbeat);
  worker.seen = Clock::now();
}

void Gateway::on_reply(const Delivery& delivery) {
  const std::string& key = delivery.properties.correlation_id;
  const std::string& type = delivery.properties.type;
  std::shared_ptr<transport::Connection> connection;
  std::string line = delivery.body;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = jobs_.find(key);
    if (it == jobs_.end()) {
      // Answered already (a redelivered job that ran twice, a cancel, a timeout) or asked by an
      // earlier gateway process: nobody waits for it.
      if (type == kResponse) {
        ++duplicates_dropped_;
        component_logger("cluster")->info("gateway: dropped a final response for {} (already answered)", key);
      }
      return;
    }
    InFlight& job = it->second;
    const std::string request_id = job.job.request_id;
    connection = job.job.connection;
    if (type == kStarted) {
      json started = json::parse(delivery.body, nullptr, false);
      job.running = true;
      job.started_at = Clock::now();
      job.worker = started.is_object() ? started.value("worker", "") : "";
      job.stage.clear();
      job.step = job.total_steps = 0;
      if (++job.attempts > 1) ++redeliveries_;
      component_logger("cluster")->info("[{}] running on {}{}", request_id, job.worker,
                                        job.attempts > 1 ? " (redelivered)" : "");
      return;
    }
    if (type == kProgress) {
      json progress = json::parse(delivery.body, nullptr, false);
      if (progress.is_object() && progress.contains("data")) {
        const json& data = progress["data"];
        job.stage = data.value("stage", job.stage);
        job.step = data.value("step", job.step);
        job.total_steps = data.value("total_steps", job.total_steps);
      }
    } else if (type == kResponse && job.job.every_worker) {
      json answer = json::parse(delivery.body, nullptr, false);
      const std::string worker = delivery.properties.app_id;
      if (answer.is_object() && answer.contains("data") && answer["data"].is_object() &&
          answer["data"].contains("cache") && workers_.count(worker))
        workers_[worker].heartbeat["models"] = answer["data"]["cache"];  // fresher than its heartbeat
      job.answers[worker] = std::move(answer);
      std::set<std::string> live;
      for (const auto& w : live_workers_locked()) live.insert(w.value("node", ""));
      line = combined_answer_locked(job, live);
      if (line.empty()) return;  // more workers to hear from
      keys_.erase(request_id);
      jobs_.erase(it);
    } else if (type == kResponse) {
      keys_.erase(request_id);
      jobs_.erase(it);
    } else {
      return;
    }
  }
  if (connection) connection->send(std::move(line));
}

std::string Gateway::combined_answer_locked(InFlight& job, const std::set<std::string>& live) const {
  if (job.answers.empty()) return "";
  for (const auto& worker : job.expected)  // a worker that left owes no answer
    if (!job.answers.count(worker) && live.count(worker)) return "";
  for (const auto& [worker, answer] : job.answers)
    if (!answer.is_object() || !answer.value("success", false)) return answer.dump();
  json combined = job.answers.begin()->second;
  json workers = json::array();
  bool all_loaded = true, any_unloaded = false;
  for (const auto& [worker, answer] : job.answers) {
    workers.push_back(worker);
    all_loaded = all_loaded && answer["data"].value("loaded", false);
    any_unloaded = any_unloaded || answer["data"].value("unloaded", false);
  }
  combined["data"]["workers"] = workers;
  if (combined["data"].contains("loaded")) combined["data"]["loaded"] = all_loaded;
  if (combined["data"].contains("unloaded")) combined["data"]["unloaded"] = any_unloaded;
  return protocol::to_line(combined);
}

json Gateway::cluster_cache_locked() const {
  json merged = json::object();
  json models = json::array();
  std::set<std::string> seen;
  for (const auto& worker : live_workers_locked()) {
    const json cache = worker.value("models", json::object());
    if (merged.empty()) merged = cache;
    for (const auto& model : cache.value("models", json::array())) {
      const std::string id = model.value("kind", "") + "/" + model.value("name", "") + "/" + model.value("variant", "");
      if (seen.insert(id).second) models.push_back(model);
    }
  }
  merged["models"] = models;
  merged["loaded_models"] = models.size();
  return merged;
}

void Gateway::expire_deadlines() {
  std::vector<std::pair<std::string, bool>> expired;  // key, was running
  std::vector<std::pair<std::shared_ptr<transport::Connection>, std::string>> finished;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto now = Clock::now();
    std::set<std::string> live;
    for (const auto& w : live_workers_locked()) live.insert(w.value("node", ""));
    for (auto it = jobs_.begin(); it != jobs_.end();) {  // every_worker jobs whose last workers left
      std::string line = it->second.job.every_worker ? combined_answer_locked(it->second, live) : "";
      if (line.empty()) {
        ++it;
        continue;
      }
      finished.emplace_back(it->second.job.connection, std::move(line));
      keys_.erase(it->second.job.request_id);
      it = jobs_.erase(it);
    }
    for (const auto& [key, job] : jobs_)
      if (job.has_deadline && now >= job.deadline) {
        expired.emplace_back(key, job.running);
        queue_cancel_locked(job);
      }
  }
  for (auto& [connection, line] : finished)
    if (connection) connection->send(std::move(line));
  for (const auto& [key, running] : expired)
    answer_error(key, Error(ErrorCode::Timeout, running ? "timed out while running" : "timed out while queued",
                            "data.metadata.timeout"));
}

}  // namespace sdxlhost::host::cluster
