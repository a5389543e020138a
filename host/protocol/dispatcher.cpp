#include "host/protocol/dispatcher.hpp"

#include "host/common/client_text.hpp"
#include "host/common/logging.hpp"
#include "host/metrics/metrics.hpp"
#include "host/protocol/wire_sink.hpp"
#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::host::protocol {
namespace {

using nlohmann::json;
using sdk::Error;
using sdk::ErrorCode;

EnvelopeLimits envelope_limits(const HostConfig& config) {
  return {config.limits.max_message_bytes, config.limits.max_json_depth};
}

}  // namespace

Client line_client(const std::shared_ptr<transport::Connection>& connection) {
  return Client{connection->id(), std::make_shared<WireSink>(connection), connection};
}

Dispatcher::Dispatcher(runtime::Engine& engine)
    : engine_(engine), requests_(engine.config()->limits.max_message_bytes) {}

Dispatcher::~Dispatcher() { stop(); }

void Dispatcher::on_line(const std::shared_ptr<transport::Connection>& connection, std::string&& line) {
  post(line_client(connection), std::move(line));
}

void Dispatcher::on_oversized(const std::shared_ptr<transport::Connection>& connection, std::size_t bytes) {
  requests_.post([this, client = line_client(connection), bytes] {
    auto limit = engine_.config()->limits.max_message_bytes;
    component_logger("protocol")->warn("client {}: line over {} bytes refused", client.id, limit);
    client.sink->error("",
                       Error(ErrorCode::MessageTooLarge,
                             "message exceeds limits.max_message_bytes (" + std::to_string(limit) + " bytes; " +
                                 std::to_string(bytes) + " read before refusing)"),
                       {});
  });
}

void Dispatcher::on_disconnect(const std::shared_ptr<transport::Connection>& connection) {
  requests_.post([this, id = connection->id()] {
    component_logger("transport")->debug("client {} went away", id);
    engine_.drop_client(id);
  });
}

void Dispatcher::post(Client client, std::string line) {
  const std::size_t bytes = line.size();
  requests_.post([this, client = std::move(client), line = std::move(line)] { handle(client, line); }, bytes);
}

void Dispatcher::post_after_pending(std::function<void()> task) { requests_.post(std::move(task)); }

void Dispatcher::handle(const Client& client, const std::string& line) {
  auto config = engine_.config();
  Envelope envelope;
  try {
    envelope = parse_envelope(line, envelope_limits(*config));
  } catch (const EnvelopeError& error) {
    component_logger("protocol")->info("client {}: refused line of {} bytes: {}", client.id, line.size(),
                                       error.what());
    client.sink->error(error.request_id(), error, {});
    return;
  } catch (const std::exception& error) {  // e.g. bad_alloc: answer, never take the thread down
    component_logger("protocol")->error("client {}: line of {} bytes failed: {}", client.id, line.size(),
                                        error.what());
    client.sink->error("", Error(ErrorCode::InternalError, client_message(error)), {});
    return;
  }
  dispatch(client, envelope, line);
}

void Dispatcher::dispatch(const Client& client, Envelope& envelope, const std::string& line) {
  auto log = component_logger("protocol");
  log->debug("[{}] {} from client {}", envelope.request_id, envelope.type_name, client.id);
  try {
    bool queued = false;
    json data;
    bool busy_refused = engine_.stopping() && envelope.type != MessageType::Ping &&
                        envelope.type != MessageType::Status && envelope.type != MessageType::Capabilities;
    if (busy_refused) throw Error(ErrorCode::ShuttingDown, "the host is shutting down");
    switch (envelope.type) {
      case MessageType::InferenceRequest: data = handle_inference(client, envelope, queued, line); break;
      case MessageType::Cancel: data = handle_cancel(envelope); break;
      case MessageType::Ping: data = ping(); break;
      case MessageType::Capabilities: data = capabilities(); break;
      case MessageType::ListModels: data = engine_.list_models(); break;
      case MessageType::LoadModel: data = handle_load_model(client, envelope, queued, line); break;
      case MessageType::UnloadModel: data = handle_unload_model(client, envelope, queued, line); break;
      case MessageType::Status: data = engine_.status(); break;
      case MessageType::ReloadConfig: data = engine_.reload_config(envelope.warnings); break;
      case MessageType::Shutdown: data = {{"shutting_down", true}}; break;
      case MessageType::Preprocess: data = handle_preprocess(client, envelope, queued, line); break;
      case MessageType::ImageMessage: data = handle_image_message(client, envelope, queued, line); break;
      case MessageType::Metrics:
        data = {{"content_type", metrics::kContentType}, {"text", engine_.metrics_text()}};
        break;
    }
    if (queued) return;  // the job answers when it ends
    metrics::Registry::global().count_response(envelope.type_name, "OK");
    client.sink->result(envelope.request_id, std::move(data), envelope.warnings);
    if (envelope.type == MessageType::Shutdown)
      engine_.request_shutdown("shutdown message from client " + std::to_string(client.id));
  } catch (const Error& error) {
    log->info("[{}] {} refused: {} ({})", envelope.request_id, envelope.type_name, error.what(),
              sdk::to_string(error.code()));
    metrics::Registry::global().count_response(envelope.type_name, sdk::to_string(error.code()));
    client.sink->error(envelope.request_id, error, envelope.warnings);
  } catch (const std::exception& error) {
    log->error("[{}] {} failed: {}", envelope.request_id, envelope.type_name, error.what());
    metrics::Registry::global().count_response(envelope.type_name, "INTERNAL_ERROR");
    client.sink->error(envelope.request_id, Error(ErrorCode::InternalError, client_message(error)),
                       envelope.warnings);
  }
}

json Dispatcher::ping() const {
  return {{"pong", true}, {"version", runtime::kHostVersion}, {"uptime_s", engine_.uptime_s()}};
}

json Dispatcher::capabilities() const {
  json capabilities = engine_.capabilities();
  capabilities["message_types"] = message_type_names();
  return capabilities;
}

}  // namespace sdxlhost::host::protocol
