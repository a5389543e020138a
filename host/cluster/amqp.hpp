#pragma once
/// @file amqp.hpp
/// A small RAII face over rabbitmq-c (librabbitmq, AMQP 0-9-1, synchronous C API): one
/// connection, its channels, the few methods the cluster roles use, and errors as exceptions.
/// Thread-safety: none. rabbitmq-c is not thread-safe, so each AmqpConnection belongs to the one
/// thread that made it (the gateway's and the worker's broker threads).

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

namespace sdxlhost::host::cluster {

/// Where the broker is: `cluster.broker`, an AMQP URL (amqp://user:password@host:port/vhost).
struct BrokerAddress {
  std::string host = "127.0.0.1";
  int port = 5672;
  std::string user = "guest";
  std::string password = "guest";
  std::string vhost = "/";
  /// The URL without the password, for logs and error messages.
  std::string display() const;
};

/// Parses an AMQP URL. Throws sdk::Error(ValidationError) naming `field` when it is not one
/// (amqps:// is refused: this build has no TLS socket configured).
BrokerAddress parse_broker_url(const std::string& url, const std::string& field);

/// A broker or connection failure (socket closed, channel closed by the broker, timeout).
/// The connection that threw is unusable afterwards: drop it and reconnect.
class AmqpError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The basic.properties the cluster uses. Empty strings are not sent.
struct MessageProperties {
  std::string correlation_id;
  std::string reply_to;
  std::string message_id;
  std::string type;
  std::string app_id;
  std::string expiration;  ///< per-message TTL in ms, as AMQP wants it: a decimal string
  int priority = -1;       ///< 0..255; -1 = not set
  bool persistent = false; ///< delivery_mode 2 (survives a broker restart in a durable queue)
};

/// One message delivered to a consumer.
struct Delivery {
  std::uint16_t channel = 0;
  std::uint64_t delivery_tag = 0;
  bool redelivered = false;
  std::string exchange;
  std::string routing_key;
  std::string body;
  MessageProperties properties;
};

/// Queue arguments and flags.
struct QueueOptions {
  bool durable = false;
  bool exclusive = false;
  bool auto_delete = false;
  int max_priority = 0;   ///< x-max-priority (classic queues); 0 = none
  long long expires_ms = 0;  ///< x-expires: the queue is deleted after this long unused; 0 = never
};

/// One open, logged-in connection.
class AmqpConnection {
 public:
  /// Connects (giving up after `connect_timeout_s`) and logs in. `heartbeat_s` 0 = no heartbeats
  /// (rabbitmq-c only answers heartbeats while it waits for frames, so only a connection that
  /// waits often should ask for them). `name` shows in the broker's connection list.
  AmqpConnection(const BrokerAddress& broker, int heartbeat_s, double connect_timeout_s, const std::string& name);
  /// Closes the connection (quietly: it may be broken already).
  ~AmqpConnection();
  AmqpConnection(const AmqpConnection&) = delete;
  AmqpConnection& operator=(const AmqpConnection&) = delete;

  /// Opens channel `channel` (1, 2, ...).
  void open_channel(std::uint16_t channel);
  /// Puts the channel in publisher-confirm mode (wait_confirm after each publish).
  void confirm_select(std::uint16_t channel);
  /// basic.qos: at most `prefetch` unacknowledged deliveries to each consumer of the channel.
  void qos(std::uint16_t channel, std::uint16_t prefetch);
  /// Declares a queue (an empty name: the broker names it) and returns its name.
  std::string declare_queue(std::uint16_t channel, const std::string& name, const QueueOptions& options);
  /// Declares an exchange of `type` ("fanout", "direct").
  void declare_exchange(std::uint16_t channel, const std::string& name, const std::string& type, bool durable);
  /// Binds `queue` to `exchange`.
  void bind_queue(std::uint16_t channel, const std::string& queue, const std::string& exchange,
                  const std::string& routing_key = "");
  /// Starts consuming `queue` on the channel; returns the consumer tag.
  std::string consume(std::uint16_t channel, const std::string& queue, bool no_ack);
  /// Stops a consumer; its unacknowledged deliveries stay with this connection until acked.
  void cancel_consumer(std::uint16_t channel, const std::string& consumer_tag);
  /// basic.publish (returns once the frames are written, not once the broker has them).
  void publish(std::uint16_t channel, const std::string& exchange, const std::string& routing_key,
               const std::string& body, const MessageProperties& properties);
  /// Waits for the broker's basic.ack of the last publish on a confirm channel (acks of
  /// earlier ones that arrive first are consumed on the way); throws on a nack of it, on a closed
  /// channel or after `timeout_s`.
  void wait_confirm(std::uint16_t channel, double timeout_s);
  /// Reads the frames already waiting (confirms of earlier publishes) without blocking, so they
  /// do not pile up in the socket; throws when one says the channel or connection closed.
  void read_pending_frames();
  /// The next delivery to any consumer of this connection, waiting at most `timeout_s`;
  /// nullopt on timeout.
  std::optional<Delivery> next_delivery(double timeout_s);
  /// basic.ack of one delivery.
  void ack(std::uint16_t channel, std::uint64_t delivery_tag);
  /// basic.reject of one delivery (`requeue`: back to the queue for another consumer).
  void reject(std::uint16_t channel, std::uint64_t delivery_tag, bool requeue);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace sdxlhost::host::cluster
