#include "host/cluster/amqp.hpp"

#include <amqp.h>
#include <amqp_tcp_socket.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <set>
#include <sys/time.h>
#include <vector>

#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::host::cluster {
namespace {

std::string to_string(amqp_bytes_t bytes) {
  return bytes.len ? std::string(static_cast<const char*>(bytes.bytes), bytes.len) : std::string();
}

amqp_bytes_t bytes_of(const std::string& text) {
  return amqp_bytes_t{text.size(), const_cast<char*>(text.data())};
}

timeval to_timeval(double seconds) {
  seconds = std::max(0.0, seconds);
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(seconds);
  tv.tv_usec = static_cast<suseconds_t>((seconds - std::floor(seconds)) * 1e6);
  return tv;
}

/// Why an RPC failed, in words (the broker's reply text when it closed the channel/connection).
std::string describe(const amqp_rpc_reply_t& reply) {
  switch (reply.reply_type) {
    case AMQP_RESPONSE_NORMAL: return "ok";
    case AMQP_RESPONSE_NONE: return "no reply (missing RPC reply type)";
    case AMQP_RESPONSE_LIBRARY_EXCEPTION: return amqp_error_string2(reply.library_error);
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      if (reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        auto* close = static_cast<amqp_connection_close_t*>(reply.reply.decoded);
        return "the broker closed the connection: " + to_string(close->reply_text);
      }
      if (reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        auto* close = static_cast<amqp_channel_close_t*>(reply.reply.decoded);
        return "the broker closed the channel: " + to_string(close->reply_text);
      }
      return "the broker answered an unexpected method";
  }
  return "unknown reply";
}

void check_status(int status, const std::string& what) {
  if (status != AMQP_STATUS_OK) throw AmqpError(what + ": " + amqp_error_string2(status));
}

/// One AMQP table entry (x-max-priority, x-expires, connection_name).
amqp_table_entry_t entry(const char* key, amqp_field_value_t value) {
  amqp_table_entry_t e;
  e.key = amqp_cstring_bytes(key);
  e.value = value;
  return e;
}

}  // namespace

std::string BrokerAddress::display() const {
  return "amqp://" + user + "@" + host + ":" + std::to_string(port) + (vhost == "/" ? "/" : "/" + vhost);
}

BrokerAddress parse_broker_url(const std::string& url, const std::string& field) {
  if (url.rfind("amqps://", 0) == 0)
    throw sdk::Error(sdk::ErrorCode::ValidationError, "amqps:// (TLS) is not supported by this build; use amqp://",
                     field);
  std::vector<char> text(url.begin(), url.end());
  text.push_back('\0');
  amqp_connection_info info;
  amqp_default_connection_info(&info);
  if (url.empty() || amqp_parse_url(text.data(), &info) != AMQP_STATUS_OK)
    throw sdk::Error(sdk::ErrorCode::ValidationError,
                     "must be an AMQP URL such as amqp://user:password@host:5672/ (got '" + url + "')", field);
  BrokerAddress address;
  address.host = info.host;
  address.port = info.port;
  address.user = info.user;
  address.password = info.password;
  address.vhost = info.vhost;
  if (address.vhost.empty()) address.vhost = "/";  // "amqp://host/" means the default vhost here
  if (address.port <= 0 || address.port > 65535)
    throw sdk::Error(sdk::ErrorCode::ValidationError, "the port must be in 1..65535", field);
  return address;
}

struct AmqpConnection::State {
  amqp_connection_state_t connection = nullptr;
  bool logged_in = false;
  /// Per confirm channel: the sequence number of the last publish (the broker numbers them 1, 2, ...).
  std::map<std::uint16_t, std::uint64_t> published;
  /// Per confirm channel: what the broker confirmed so far (everything <= it when it said
  /// "multiple"; single tags otherwise).
  std::map<std::uint16_t, std::uint64_t> confirmed_up_to;
  std::map<std::uint16_t, std::set<std::uint64_t>> confirmed_single;

  bool is_confirmed(std::uint16_t channel, std::uint64_t tag) {
    return confirmed_up_to[channel] >= tag || confirmed_single[channel].count(tag);
  }

  /// Handles one frame read outside a consume: confirms are recorded, closes throw.
  void on_frame(const amqp_frame_t& frame) {
    if (frame.frame_type != AMQP_FRAME_METHOD) return;
    switch (frame.payload.method.id) {
      case AMQP_BASIC_ACK_METHOD: {
        auto* ack = static_cast<amqp_basic_ack_t*>(frame.payload.method.decoded);
        if (ack->multiple) {
          auto& up_to = confirmed_up_to[frame.channel];
          up_to = std::max(up_to, ack->delivery_tag);
          auto& singles = confirmed_single[frame.channel];
          singles.erase(singles.begin(), singles.upper_bound(up_to));
        } else {
          confirmed_single[frame.channel].insert(ack->delivery_tag);
        }
        break;
      }
      case AMQP_BASIC_NACK_METHOD: {
        auto* nack = static_cast<amqp_basic_nack_t*>(frame.payload.method.decoded);
        if (nack->delivery_tag >= published[frame.channel] || nack->multiple)
          throw AmqpError("the broker refused (nack) a published message");
        break;  // a nack of an earlier best-effort message (progress): nothing to do
      }
      case AMQP_CHANNEL_CLOSE_METHOD: {
        auto* close = static_cast<amqp_channel_close_t*>(frame.payload.method.decoded);
        throw AmqpError("the broker closed channel " + std::to_string(frame.channel) + ": " +
                        to_string(close->reply_text));
      }
      case AMQP_CONNECTION_CLOSE_METHOD: throw AmqpError("the broker closed the connection");
      default: break;  // basic.return of an unroutable message and the like
    }
  }

  void check_rpc(const std::string& what) const {
    amqp_rpc_reply_t reply = amqp_get_rpc_reply(connection);
    if (reply.reply_type != AMQP_RESPONSE_NORMAL) throw AmqpError(what + ": " + describe(reply));
  }
};

AmqpConnection::AmqpConnection(const BrokerAddress& broker, int heartbeat_s, double connect_timeout_s,
                               const std::string& name)
    : state_(std::make_unique<State>()) {
  state_->connection = amqp_new_connection();
  if (!state_->connection) throw AmqpError("cannot allocate an AMQP connection");
  amqp_socket_t* socket = amqp_tcp_socket_new(state_->connection);
  if (!socket) throw AmqpError("cannot create a TCP socket");
  timeval timeout = to_timeval(connect_timeout_s);
  check_status(amqp_socket_open_noblock(socket, broker.host.c_str(), broker.port, &timeout),
               "cannot connect to " + broker.display());
  amqp_set_handshake_timeout(state_->connection, &timeout);
  amqp_set_rpc_timeout(state_->connection, &timeout);  // a broker that stops answering RPCs is down
  amqp_field_value_t name_value;
  name_value.kind = AMQP_FIELD_KIND_UTF8;
  name_value.value.bytes = bytes_of(name);
  amqp_table_entry_t properties_entry = entry("connection_name", name_value);
  amqp_table_t properties{1, &properties_entry};
  amqp_rpc_reply_t reply = amqp_login_with_properties(state_->connection, broker.vhost.c_str(), 0, 131072,
                                                      heartbeat_s, &properties, AMQP_SASL_METHOD_PLAIN,
                                                      broker.user.c_str(), broker.password.c_str());
  if (reply.reply_type != AMQP_RESPONSE_NORMAL)
    throw AmqpError("cannot log in to " + broker.display() + ": " + describe(reply));
  state_->logged_in = true;
}

AmqpConnection::~AmqpConnection() {
  if (!state_ || !state_->connection) return;
  if (state_->logged_in) {
    timeval quick = to_timeval(0.5);
    amqp_set_rpc_timeout(state_->connection, &quick);
    amqp_connection_close(state_->connection, AMQP_REPLY_SUCCESS);
  }
  amqp_destroy_connection(state_->connection);
}

void AmqpConnection::open_channel(std::uint16_t channel) {
  amqp_channel_open(state_->connection, channel);
  state_->check_rpc("cannot open channel " + std::to_string(channel));
}

void AmqpConnection::confirm_select(std::uint16_t channel) {
  amqp_confirm_select(state_->connection, channel);
  state_->check_rpc("confirm.select");
  state_->published[channel] = 0;
}

void AmqpConnection::qos(std::uint16_t channel, std::uint16_t prefetch) {
  amqp_basic_qos(state_->connection, channel, 0, prefetch, 0);
  state_->check_rpc("basic.qos");
}

std::string AmqpConnection::declare_queue(std::uint16_t channel, const std::string& name,
                                          const QueueOptions& options) {
  std::vector<amqp_table_entry_t> arguments;
  if (options.max_priority > 0) {
    amqp_field_value_t value;
    value.kind = AMQP_FIELD_KIND_I32;
    value.value.i32 = options.max_priority;
    arguments.push_back(entry("x-max-priority", value));
  }
  if (options.expires_ms > 0) {
    amqp_field_value_t value;
    value.kind = AMQP_FIELD_KIND_I64;
    value.value.i64 = options.expires_ms;
    arguments.push_back(entry("x-expires", value));
  }
  amqp_table_t table{static_cast<int>(arguments.size()), arguments.empty() ? nullptr : arguments.data()};
  amqp_queue_declare_ok_t* ok = amqp_queue_declare(state_->connection, channel, bytes_of(name), 0, options.durable,
                                                   options.exclusive, options.auto_delete, table);
  state_->check_rpc("cannot declare queue '" + name + "'");
  return to_string(ok->queue);
}

void AmqpConnection::declare_exchange(std::uint16_t channel, const std::string& name, const std::string& type,
                                      bool durable) {
  amqp_exchange_declare(state_->connection, channel, bytes_of(name), bytes_of(type), 0, durable, 0, 0,
                        amqp_empty_table);
  state_->check_rpc("cannot declare exchange '" + name + "'");
}

void AmqpConnection::bind_queue(std::uint16_t channel, const std::string& queue, const std::string& exchange,
                                const std::string& routing_key) {
  amqp_queue_bind(state_->connection, channel, bytes_of(queue), bytes_of(exchange), bytes_of(routing_key),
                  amqp_empty_table);
  state_->check_rpc("cannot bind queue '" + queue + "' to '" + exchange + "'");
}

std::string AmqpConnection::consume(std::uint16_t channel, const std::string& queue, bool no_ack) {
  amqp_basic_consume_ok_t* ok = amqp_basic_consume(state_->connection, channel, bytes_of(queue), amqp_empty_bytes,
                                                   0, no_ack, 0, amqp_empty_table);
  state_->check_rpc("cannot consume queue '" + queue + "'");
  return to_string(ok->consumer_tag);
}

void AmqpConnection::cancel_consumer(std::uint16_t channel, const std::string& consumer_tag) {
  amqp_basic_cancel(state_->connection, channel, bytes_of(consumer_tag));
  state_->check_rpc("basic.cancel");
}

void AmqpConnection::publish(std::uint16_t channel, const std::string& exchange, const std::string& routing_key,
                             const std::string& body, const MessageProperties& properties) {
  amqp_basic_properties_t p{};
  auto set_text = [&p](const std::string& value, amqp_flags_t flag, amqp_bytes_t& field) {
    if (value.empty()) return;
    field = bytes_of(value);
    p._flags |= flag;
  };
  set_text(properties.correlation_id, AMQP_BASIC_CORRELATION_ID_FLAG, p.correlation_id);
  set_text(properties.reply_to, AMQP_BASIC_REPLY_TO_FLAG, p.reply_to);
  set_text(properties.message_id, AMQP_BASIC_MESSAGE_ID_FLAG, p.message_id);
  set_text(properties.type, AMQP_BASIC_TYPE_FLAG, p.type);
  set_text(properties.app_id, AMQP_BASIC_APP_ID_FLAG, p.app_id);
  set_text(properties.expiration, AMQP_BASIC_EXPIRATION_FLAG, p.expiration);
  if (properties.priority >= 0) {
    p.priority = static_cast<uint8_t>(properties.priority);
    p._flags |= AMQP_BASIC_PRIORITY_FLAG;
  }
  p.delivery_mode = properties.persistent ? 2 : 1;
  p._flags |= AMQP_BASIC_DELIVERY_MODE_FLAG;
  check_status(amqp_basic_publish(state_->connection, channel, bytes_of(exchange), bytes_of(routing_key), 0, 0,
                                  &p, bytes_of(body)),
               "basic.publish to '" + (exchange.empty() ? routing_key : exchange) + "'");
  if (auto it = state_->published.find(channel); it != state_->published.end()) ++it->second;
}

void AmqpConnection::wait_confirm(std::uint16_t channel, double timeout_s) {
  const std::uint64_t tag = state_->published[channel];
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (!state_->is_confirmed(channel, tag)) {
    const double left = std::chrono::duration<double>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) throw AmqpError("no publisher confirm within " + std::to_string(timeout_s) + " s");
    amqp_frame_t frame;
    timeval timeout = to_timeval(left);
    int status = amqp_simple_wait_frame_noblock(state_->connection, &frame, &timeout);
    if (status == AMQP_STATUS_TIMEOUT) continue;
    check_status(status, "waiting for a publisher confirm");
    state_->on_frame(frame);
  }
}

void AmqpConnection::read_pending_frames() {
  for (;;) {
    amqp_frame_t frame;
    timeval none = to_timeval(0);
    int status = amqp_simple_wait_frame_noblock(state_->connection, &frame, &none);
    if (status == AMQP_STATUS_TIMEOUT) return;
    check_status(status, "reading frames");
    state_->on_frame(frame);
  }
}

std::optional<Delivery> AmqpConnection::next_delivery(double timeout_s) {
  amqp_maybe_release_buffers(state_->connection);
  amqp_envelope_t envelope;
  timeval timeout = to_timeval(timeout_s);
  amqp_rpc_reply_t reply = amqp_consume_message(state_->connection, &envelope, &timeout, 0);
  if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && reply.library_error == AMQP_STATUS_TIMEOUT)
    return std::nullopt;
  if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && reply.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
    // A frame other than a delivery is waiting: read it; a close means this connection is over.
    amqp_frame_t frame;
    timeval none = to_timeval(0);
    int status = amqp_simple_wait_frame_noblock(state_->connection, &frame, &none);
    if (status == AMQP_STATUS_TIMEOUT) return std::nullopt;
    check_status(status, "reading a frame");
    if (frame.frame_type == AMQP_FRAME_METHOD) {
      if (frame.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD) {
        auto* close = static_cast<amqp_channel_close_t*>(frame.payload.method.decoded);
        throw AmqpError("the broker closed channel " + std::to_string(frame.channel) + ": " +
                        to_string(close->reply_text));
      }
      if (frame.payload.method.id == AMQP_CONNECTION_CLOSE_METHOD)
        throw AmqpError("the broker closed the connection");
      if (frame.payload.method.id == AMQP_BASIC_CANCEL_METHOD)
        throw AmqpError("the broker cancelled a consumer (its queue was deleted)");
    }
    return std::nullopt;
  }
  if (reply.reply_type != AMQP_RESPONSE_NORMAL) throw AmqpError("consuming: " + describe(reply));
  Delivery delivery;
  delivery.channel = envelope.channel;
  delivery.delivery_tag = envelope.delivery_tag;
  delivery.redelivered = envelope.redelivered != 0;
  delivery.exchange = to_string(envelope.exchange);
  delivery.routing_key = to_string(envelope.routing_key);
  delivery.body = to_string(envelope.message.body);
  const amqp_basic_properties_t& p = envelope.message.properties;
  auto text = [&p](amqp_flags_t flag, const amqp_bytes_t& field) {
    return (p._flags & flag) ? to_string(field) : std::string();
  };
  delivery.properties.correlation_id = text(AMQP_BASIC_CORRELATION_ID_FLAG, p.correlation_id);
  delivery.properties.reply_to = text(AMQP_BASIC_REPLY_TO_FLAG, p.reply_to);
  delivery.properties.message_id = text(AMQP_BASIC_MESSAGE_ID_FLAG, p.message_id);
  delivery.properties.type = text(AMQP_BASIC_TYPE_FLAG, p.type);
  delivery.properties.app_id = text(AMQP_BASIC_APP_ID_FLAG, p.app_id);
  delivery.properties.expiration = text(AMQP_BASIC_EXPIRATION_FLAG, p.expiration);
  if (p._flags & AMQP_BASIC_PRIORITY_FLAG) delivery.properties.priority = p.priority;
  delivery.properties.persistent = (p._flags & AMQP_BASIC_DELIVERY_MODE_FLAG) && p.delivery_mode == 2;
  amqp_destroy_envelope(&envelope);
  return delivery;
}

void AmqpConnection::ack(std::uint16_t channel, std::uint64_t delivery_tag) {
  check_status(amqp_basic_ack(state_->connection, channel, delivery_tag, 0), "basic.ack");
}

void AmqpConnection::reject(std::uint16_t channel, std::uint64_t delivery_tag, bool requeue) {
  check_status(amqp_basic_reject(state_->connection, channel, delivery_tag, requeue), "basic.reject");
}

}  // namespace sdxlhost::host::cluster
