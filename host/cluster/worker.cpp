#include "host/cluster/worker.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include "host/cluster/topology.hpp"
#include "host/common/logging.hpp"

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

/// A connection that throws away what it is sent (the answer to the worker's own cancel line).
class DiscardConnection : public transport::Connection {
 public:
  std::uint64_t id() const override { return id_; }
  void send(std::string) override {}
  bool is_open() const override { return true; }
  void close() override {}

 private:
  std::uint64_t id_ = transport::next_connection_id();
};

}  // namespace

struct Worker::Mailbox {
  std::mutex mutex;
  std::deque<Outgoing> lines;
};

/// The client of one job message: what HostService sends it goes to the gateway.
class Worker::JobConnection : public transport::Connection {
 public:
  JobConnection(std::shared_ptr<Mailbox> mailbox, std::string key, std::string reply_to)
      : mailbox_(std::move(mailbox)), key_(std::move(key)), reply_to_(std::move(reply_to)) {}

  std::uint64_t id() const override { return id_; }
  bool is_open() const override { return !answered_.load(); }
  void close() override {}

  void send(std::string line) override {
    if (answered_.load()) return;
    Outgoing message;
    message.key = key_;
    message.reply_to = reply_to_;
    const json parsed = json::parse(line, nullptr, /*allow_exceptions=*/false);
    const bool final = parsed.is_object() && parsed.value("message_type", "") == "response";
    message.type = final ? kResponse : kProgress;
    if (final) {
      answered_ = true;
      // Refused only because this host is stopping: another worker should run it.
      if (!parsed.value("success", true)) message.error_code = parsed.value("error_code", "");
      message.requeue = message.error_code == "SHUTTING_DOWN";
    }
    message.body = std::move(line);
    std::lock_guard<std::mutex> lock(mailbox_->mutex);
    mailbox_->lines.push_back(std::move(message));
  }

 private:
  std::shared_ptr<Mailbox> mailbox_;
  std::string key_;
  std::string reply_to_;
  std::uint64_t id_ = transport::next_connection_id();
  std::atomic<bool> answered_{false};
};

Worker::Worker(const HostConfig& config, runtime::HostService& host, boost::asio::io_context& io)
    : settings_(config.cluster),
      broker_(parse_broker_url(config.cluster.broker, "cluster.broker")),
      node_(node_name(config.cluster)),
      prefetch_(config.queue.executors),
      cancelled_memory_s_(config.limits.max_timeout_s),
      host_(host),
      io_(io),
      mailbox_(std::make_shared<Mailbox>()) {}

Worker::~Worker() { stop(); }

void Worker::start() {
  component_logger("cluster")->info("worker {}: broker {}, jobs queue '{}', prefetch {}", node_, broker_.display(),
                                    settings_.jobs_queue, prefetch_);
  thread_ = std::thread([this] { broker_loop(); });
}

void Worker::stop() {
  stopping_ = true;
  if (thread_.joinable()) thread_.join();
}

void Worker::sleep_unless_stopping(double s) {
  const auto until = Clock::now() + seconds(s);
  while (!stopping_ && Clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(20));
}

void Worker::broker_loop() {
  auto log = component_logger("cluster");
  double backoff = 0.1;
  while (!stopping_) {
    if (!connected_) {
      try {
        connect();
        backoff = 0.1;
      } catch (const std::exception& error) {
        disconnect(error.what());
        backoff = std::min(backoff * 2, settings_.reconnect_max_s);
        log->warn("worker: broker {} unreachable ({}); next attempt in {:.1f} s", broker_.display(), error.what(),
                  backoff);
        sleep_unless_stopping(backoff);
        continue;
      }
    }
    try {
      publish_outbox();
      if (host_.stopping() && !consumer_tag_.empty()) {  // take no more jobs; say so at once
        consumer_->cancel_consumer(kJobsChannel, consumer_tag_);
        consumer_tag_.clear();
        next_heartbeat_ = Clock::now();
        log->info("worker: host stopping, no longer consuming '{}'", settings_.jobs_queue);
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
    } catch (const AmqpError& error) {
      log->error("worker: lost the broker: {}", error.what());
      disconnect(error.what());
    }
  }
  if (connected_) {
    try {  // answers of jobs that finished while stopping, then goodbye
      publish_outbox();
      send_heartbeat("leaving");
    } catch (const std::exception& error) {
      log->warn("worker: could not flush before stopping: {}", error.what());
    }
  }
  disconnect("worker stopping");
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
  if (!host_.stopping()) consumer_tag_ = consumer_->consume(kJobsChannel, settings_.jobs_queue, /*no_ack=*/false);
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
    if (message.error_code == "CANCELLED" && host_.stopping() && !cancelled_.count(message.key))
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
    auto connection = std::make_shared<JobConnection>(mailbox_, delivery.properties.message_id,
                                                      delivery.properties.reply_to);
    boost::asio::post(io_, [this, connection, line = delivery.body]() mutable {
      host_.on_line(connection, std::move(line));
    });
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
  boost::asio::post(io_, [this, line = std::move(line)]() mutable {
    host_.on_line(std::make_shared<DiscardConnection>(), std::move(line));
  });
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
  auto connection = std::make_shared<JobConnection>(mailbox_, key, delivery.properties.reply_to);
  boost::asio::post(io_, [this, connection, line = delivery.body]() mutable {
    host_.on_line(connection, std::move(line));
  });
}

void Worker::send_heartbeat(const std::string& state) {
  const json capabilities = host_.capabilities();
  const json status = host_.status();
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
                          {"ready", state == "serving" && host_.ready()},
                          {"jobs_done", jobs_done_}};
  MessageProperties properties;
  properties.type = "heartbeat";
  properties.app_id = node_;
  publisher_->publish(kPlainChannel, settings_.heartbeat_exchange, "", heartbeat.dump(), properties);
}

}  // namespace sdxlhost::host::cluster
