#include "host/cluster/worker.hpp"

#include "host/cluster/broker_loop.hpp"
#include "host/cluster/topology.hpp"
#include "host/common/logging.hpp"
#include "host/protocol/dispatcher.hpp"
#include "host/protocol/envelope.hpp"
#include "host/protocol/wire_sink.hpp"

namespace sdxlhost::host::cluster {
namespace {

using nlohmann::json;
using runtime::Clock;

// One channel for everything a job sends the gateway (started, progress, the final response), so
// the broker keeps their order (it does not across channels); confirm mode, and only the final
// response is waited for.
constexpr std::uint16_t kConfirmedChannel = 1;
constexpr std::uint16_t kPlainChannel = 2;      // publisher: heartbeats
constexpr std::uint16_t kJobsChannel = 1;       // consumer: the jobs queue (manual ack, prefetch)
constexpr std::uint16_t kCancelChannel = 2;     // consumer: the cancel fanout
constexpr double kPollSeconds = 0.02;
constexpr double kConfirmTimeoutSeconds = 5.0;

Clock::duration seconds(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

/// Where the answer to the worker's own cancel line goes: nowhere.
class DiscardSink : public runtime::JobSink {
 public:
  void progress(const runtime::ProgressEvent&) override {}
  void result(const std::string&, json, const std::vector<std::string>&) override {}
  void error(const std::string&, const sdk::Error&, const std::vector<std::string>&) override {}
};

}  // namespace

struct Worker::Mailbox {
  std::mutex mutex;
  std::deque<Outgoing> lines;
};

/// The client of one job message: its events become the client's wire lines, published to the
/// gateway's reply queue by the broker thread. The final answer is the last line it takes.
class Worker::ReplySink : public runtime::JobSink {
 public:
  ReplySink(std::shared_ptr<Mailbox> mailbox, std::string key, std::string reply_to)
      : mailbox_(std::move(mailbox)), key_(std::move(key)), reply_to_(std::move(reply_to)) {}

  void progress(const runtime::ProgressEvent& event) override {
    if (answered_.load()) return;
    queue(kProgress, protocol::to_line(protocol::encode_progress(event)), "");
  }
  void result(const std::string& request_id, json data, const std::vector<std::string>& warnings) override {
    if (answered_.exchange(true)) return;
    queue(kResponse, protocol::to_line(protocol::success_response(request_id, std::move(data), warnings)), "");
  }
  void error(const std::string& request_id, const sdk::Error& error, const std::vector<std::string>& warnings) override {
    if (answered_.exchange(true)) return;
    queue(kResponse, protocol::to_line(protocol::error_response(request_id, error, warnings)),
          sdk::to_string(error.code()));
  }

 private:
  void queue(const char* type, std::string body, std::string error_code) {
    Outgoing message;
    message.key = key_;
    message.reply_to = reply_to_;
    message.type = type;
    // Refused only because this host is stopping: another worker should run it.
    message.requeue = error_code == "SHUTTING_DOWN";
    message.error_code = std::move(error_code);
    message.body = std::move(body);
    std::lock_guard<std::mutex> lock(mailbox_->mutex);
    mailbox_->lines.push_back(std::move(message));
  }

  std::shared_ptr<Mailbox> mailbox_;
  std::string key_;
  std::string reply_to_;
  std::atomic<bool> answered_{false};
};

Worker::Worker(const HostConfig& config, runtime::HostService& host)
    : settings_(config.cluster),
      broker_(parse_broker_url(config.cluster.broker, "cluster.broker")),
      node_(node_name(config.cluster)),
      prefetch_(config.queue.executors),
      cancelled_memory_s_(config.limits.max_timeout_s),
      host_(host),
      mailbox_(std::make_shared<Mailbox>()) {}

Worker::~Worker() { stop(); }

void Worker::start(std::function<void()>) {
  component_logger("cluster")->info("worker {}: broker {}, jobs queue '{}', prefetch {}", node_, broker_.display(),
                                    settings_.jobs_queue, prefetch_);
  thread_ = std::thread([this] { broker_loop(); });
}

void Worker::stop() {
  stopping_ = true;
  if (thread_.joinable()) thread_.join();
}

void Worker::broker_loop() {
  BrokerLoop loop;
  loop.role = "worker";
  loop.broker = broker_;
  loop.reconnect_max_s = settings_.reconnect_max_s;
  loop.stopping = &stopping_;
  loop.connected = &connected_;
  loop.connect = [this] { connect(); };
  loop.disconnect = [this](const std::string& why) { disconnect(why); };
  loop.serve_once = [this] { serve_once(); };
  run_broker_loop(loop);
  if (connected_) {
    try {  // answers of jobs that finished while stopping, then goodbye
      publish_outbox();
      send_heartbeat("leaving");
    } catch (const std::exception& error) {
      component_logger("cluster")->warn("worker: could not flush before stopping: {}", error.what());
    }
  }
  disconnect("worker stopping");
}

void Worker::serve_once() {
  publish_outbox();
  if (host_.engine().stopping() && !consumer_tag_.empty()) {  // take no more jobs; say so at once
    consumer_->cancel_consumer(kJobsChannel, consumer_tag_);
    consumer_tag_.clear();
    next_heartbeat_ = Clock::now();
    component_logger("cluster")->info("worker: host stopping, no longer consuming '{}'", settings_.jobs_queue);
  }
  if (Clock::now() >= next_heartbeat_) {
    send_heartbeat(consumer_tag_.empty() ? "leaving" : "serving");
    next_heartbeat_ = Clock::now() + seconds(settings_.heartbeat_s);
  }
  for (int i = 0; i < 16; ++i) {
    auto delivery = consumer_->next_delivery(i == 0 ? kPollSeconds : 0.0);
    if (!delivery) break;
    on_delivery(*delivery);
  }
}

void Worker::post_line(std::shared_ptr<runtime::JobSink> sink, std::string line) {
  host_.dispatcher().post(protocol::Client{transport::next_connection_id(), std::move(sink), nullptr}, std::move(line));
}

void Worker::connect() {
  publisher_ = std::make_unique<AmqpConnection>(broker_, 0, 2.0, node_ + " worker publisher");
  publisher_->open_channel(kConfirmedChannel);
  publisher_->confirm_select(kConfirmedChannel);
  publisher_->open_channel(kPlainChannel);
  declare_topology(*publisher_, kPlainChannel, settings_);

  consumer_ = std::make_unique<AmqpConnection>(broker_, 10, 2.0, node_ + " worker consumer");
  // Cancels first: a job is never received before the cancels that may name it can be heard.
  consumer_->open_channel(kCancelChannel);
  QueueOptions cancels;
  cancels.exclusive = true;
  cancels.auto_delete = true;
  const std::string cancel_queue = consumer_->declare_queue(kCancelChannel, "", cancels);
  consumer_->bind_queue(kCancelChannel, cancel_queue, settings_.cancel_exchange);
  consumer_->consume(kCancelChannel, cancel_queue, /*no_ack=*/true);
  consumer_->open_channel(kJobsChannel);
  consumer_->qos(kJobsChannel, static_cast<std::uint16_t>(prefetch_));
  if (!host_.engine().stopping()) consumer_tag_ = consumer_->consume(kJobsChannel, settings_.jobs_queue, /*no_ack=*/false);
  ++generation_;
  connected_ = true;
  next_heartbeat_ = Clock::now();
  component_logger("cluster")->info("worker: connected to {}", broker_.display());
}

void Worker::disconnect(const std::string& why) {
  if (connected_.exchange(false)) component_logger("cluster")->warn("worker: disconnected: {}", why);
  publisher_.reset();
  consumer_.reset();
  consumer_tag_.clear();
  // Job messages of that connection went back to the queue; answers still to publish stay in
  // the mailbox and go out after the reconnect (the gateway keeps one of each).
}

void Worker::publish_outbox() {
  for (;;) {
    Outgoing message;
    {
      std::lock_guard<std::mutex> lock(mailbox_->mutex);
      if (mailbox_->lines.empty()) return;
      message = std::move(mailbox_->lines.front());
      mailbox_->lines.pop_front();
    }
    MessageProperties properties;
    properties.correlation_id = message.key;
    properties.type = message.type;
    properties.app_id = node_;
    if (message.type != kResponse) {  // progress: not waited for (the final's confirm covers it)
      publisher_->publish(kConfirmedChannel, "", message.reply_to, message.body, properties);
      publisher_->read_pending_frames();
      continue;
    }
    std::vector<std::pair<std::uint64_t, std::uint64_t>> deliveries;
    if (auto it = active_.find(message.key); it != active_.end()) deliveries = it->second.deliveries;
    // Cancelled by this host's own shutdown (its grace ran out), not by the gateway: another
    // worker should run it.
    if (message.error_code == "CANCELLED" && host_.engine().stopping() && !cancelled_.count(message.key))
      message.requeue = true;
    try {
      if (message.requeue) {
        for (const auto& [generation, tag] : deliveries)
          if (generation == generation_) consumer_->reject(kJobsChannel, tag, /*requeue=*/true);
        component_logger("cluster")->info("worker: job {} given back to the queue (host stopping)", message.key);
      } else {
        properties.persistent = true;
        publisher_->publish(kConfirmedChannel, "", message.reply_to, message.body, properties);
        publisher_->wait_confirm(kConfirmedChannel, kConfirmTimeoutSeconds);
        // Only now is the job done as far as the broker knows.
        for (const auto& [generation, tag] : deliveries)
          if (generation == generation_) consumer_->ack(kJobsChannel, tag);
        answered_[message.key] = Clock::now();
        ++jobs_done_;
      }
    } catch (const AmqpError&) {
      std::lock_guard<std::mutex> lock(mailbox_->mutex);  // retried after the reconnect
      mailbox_->lines.push_front(std::move(message));
      throw;
    }
    active_.erase(message.key);
  }
}

void Worker::on_delivery(const Delivery& delivery) {
  if (delivery.channel == kCancelChannel) on_cancel(delivery);
  else on_job(delivery);
}

void Worker::on_cancel(const Delivery& delivery) {
  if (delivery.properties.type == "load_model" || delivery.properties.type == "unload_model") {
    // For every worker (its own model cache): run it, answer like any job, nothing to ack.
    post_line(std::make_shared<ReplySink>(mailbox_, delivery.properties.message_id, delivery.properties.reply_to),
              delivery.body);
    return;
  }
  const json cancel = json::parse(delivery.body, nullptr, /*allow_exceptions=*/false);
  if (!cancel.is_object()) return;
  const std::string key = cancel.value("key", "");
  if (key.empty()) return;
  forget_old_keys();
  cancelled_[key] = Clock::now();
  auto active = active_.find(key);
  if (active == active_.end()) return;
  const std::string request_id = active->second.request_id;
  component_logger("cluster")->info("[{}] cancel from the gateway for job {}", request_id, key);
  std::string line = json{{"message_type", "cancel"},
                          {"request_id", "cluster-cancel-" + key},
                          {"data", {{"request_id", request_id}}}}
                         .dump();
  post_line(std::make_shared<DiscardSink>(), std::move(line));
}

void Worker::forget_old_keys() {
  const auto now = Clock::now();
  for (auto* keys : {&cancelled_, &answered_})  // a job older than the longest timeout cannot come back
    for (auto it = keys->begin(); it != keys->end();)
      it = now - it->second > seconds(cancelled_memory_s_) ? keys->erase(it) : std::next(it);
}

void Worker::on_job(const Delivery& delivery) {
  auto log = component_logger("cluster");
  const std::string& key = delivery.properties.message_id;
  if (key.empty() || delivery.properties.reply_to.empty()) {
    log->error("worker: job message without message_id/reply_to refused (not from a gateway)");
    consumer_->reject(kJobsChannel, delivery.delivery_tag, /*requeue=*/false);
    return;
  }
  forget_old_keys();
  if (cancelled_.count(key) || answered_.count(key)) {
    log->info("[{}] dropped: {}", delivery.properties.correlation_id,
              cancelled_.count(key) ? "cancelled before it started" : "answered already (redelivered)");
    consumer_->ack(kJobsChannel, delivery.delivery_tag);
    return;
  }
  if (auto it = active_.find(key); it != active_.end()) {  // redelivered while it still runs here
    it->second.deliveries.emplace_back(generation_, delivery.delivery_tag);
    return;
  }
  active_[key] = Active{delivery.properties.correlation_id, {{generation_, delivery.delivery_tag}}};
  MessageProperties started;
  started.correlation_id = key;
  started.type = kStarted;
  started.app_id = node_;
  publisher_->publish(kConfirmedChannel, "", delivery.properties.reply_to,
                      json{{"worker", node_}, {"redelivered", delivery.redelivered}}.dump(), started);
  log->info("[{}] job {} taken{}", delivery.properties.correlation_id, key,
            delivery.redelivered ? " (redelivered)" : "");
  post_line(std::make_shared<ReplySink>(mailbox_, key, delivery.properties.reply_to), delivery.body);
}

void Worker::send_heartbeat(const std::string& state) {
  const json capabilities = host_.dispatcher().capabilities();
  const json status = host_.engine().status();
  json features = json::array();
  for (const auto& stage : capabilities.value("stages", json::array())) {
    const std::string feature = stage.value("feature", "");
    if (std::find(features.begin(), features.end(), feature) == features.end()) features.push_back(feature);
  }
  for (const auto& name : capabilities.value("preprocessors", json::array()))
    features.push_back("preprocessor:" + name.get<std::string>());
  json plugins = json::array();
  for (const auto& plugin : capabilities.value("plugins", json::array()))
    if (plugin.value("state", "") == "loaded") plugins.push_back(plugin.value("name", ""));
  const json heartbeat = {{"node", node_},
                          {"state", state},
                          {"features", features},
                          {"plugins", plugins},
                          {"schedulers", capabilities.value("schedulers", json::array())},
                          {"preprocessors", capabilities.value("preprocessors", json::array())},
                          {"device", capabilities.value("device", "")},
                          {"executors", status.value("executors", 0)},
                          {"running", status.value("running", json::array())},
                          {"models", status.value("models", json::object())},
                          {"ready", state == "serving" && host_.engine().ready()},
                          {"jobs_done", jobs_done_}};
  MessageProperties properties;
  properties.type = "heartbeat";
  properties.app_id = node_;
  publisher_->publish(kPlainChannel, settings_.heartbeat_exchange, "", heartbeat.dump(), properties);
}

}  // namespace sdxlhost::host::cluster
