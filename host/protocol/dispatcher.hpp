#pragma once
/// @file dispatcher.hpp
/// The protocol dispatcher, the same for every transport: takes a client's line, parses the
/// envelope, routes the message type (inference_request, cancel, ping, capabilities,
/// list_models, load_model, unload_model, status, reload_config, shutdown, preprocess, metrics,
/// and the SDK's image messages) to the engine, and answers through the client's JobSink.
/// Generation, image messages, model preloads and preprocessing become jobs on the engine (or,
/// on a gateway, go to its JobForwarder); everything else is answered at once.
///
/// Lines from the line transports (MessageHandler) and from post() are handled on the request
/// thread (request_thread.hpp), in arrival order, never on the transports' I/O thread.
/// Thread-safety: every method may be called from any thread.

#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "host/protocol/envelope.hpp"
#include "host/protocol/request_thread.hpp"
#include "host/runtime/engine.hpp"
#include "host/runtime/job_sink.hpp"
#include "host/transport/connection.hpp"

namespace sdxlhost::host::protocol {

/// Who sent a line, and where its answers go.
struct Client {
  std::uint64_t id = 0;  ///< owns the jobs its lines start: its disconnect drops them
  std::shared_ptr<runtime::JobSink> sink;  ///< every answer and job event of its requests
  /// The line connection of a pipe or stdio client: a gateway relays the workers' lines to it
  /// as they come (null for a broker job and an in-process client, which a gateway never serves).
  std::shared_ptr<transport::Connection> connection;
};

/// The client of a line connection: its answers are encoded as wire lines (wire_sink.hpp).
Client line_client(const std::shared_ptr<transport::Connection>& connection);

/// Parses, routes and answers the messages of every transport.
class Dispatcher : public transport::MessageHandler {
 public:
  /// `engine` must outlive the dispatcher. Starts the request thread.
  explicit Dispatcher(runtime::Engine& engine);
  /// Stops the request thread (see stop()).
  ~Dispatcher() override;
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  // ---- transport::MessageHandler (called from the I/O thread; queued on the request thread) ----
  /// Queues the line; it is handled as handle() does.
  void on_line(const std::shared_ptr<transport::Connection>& connection, std::string&& line) override;
  /// Queues the MESSAGE_TOO_LARGE answer behind the client's earlier lines.
  void on_oversized(const std::shared_ptr<transport::Connection>& connection, std::size_t bytes) override;
  /// Queues dropping the client's queued jobs and cancelling its running ones.
  void on_disconnect(const std::shared_ptr<transport::Connection>& connection) override;

  /// Queues a line of a client that has no line connection (a broker job, the CLI).
  void post(Client client, std::string line);
  /// Runs `task` on the request thread once every line queued before it was handled (stdin's
  /// end: the drain must see the last lines' jobs).
  void post_after_pending(std::function<void()> task);
  /// Handles one line on the calling thread: parses the envelope and dispatches it.
  void handle(const Client& client, const std::string& line);
  /// Stops the request thread after the line it handles now; lines still queued and later
  /// ones are dropped. The owner calls it before the engine goes.
  void stop() { requests_.stop(); }

  /// The `capabilities` answer's data: the engine's plus `message_types`.
  nlohmann::json capabilities() const;

 private:
  void dispatch(const Client& client, Envelope& envelope, const std::string& line);
  nlohmann::json handle_inference(const Client& client, Envelope& envelope, bool& queued, const std::string& line);
  /// A message of sdk::image_messages() (envelope.image_message): an image for one feature's stages.
  nlohmann::json handle_image_message(const Client& client, Envelope& envelope, bool& queued,
                                      const std::string& line);
  nlohmann::json handle_cancel(const Envelope& envelope);
  nlohmann::json handle_load_model(const Client& client, Envelope& envelope, bool& queued, const std::string& line);
  nlohmann::json handle_unload_model(const Client& client, Envelope& envelope, bool& queued,
                                     const std::string& line);
  nlohmann::json handle_preprocess(const Client& client, Envelope& envelope, bool& queued, const std::string& line);
  nlohmann::json ping() const;
  /// Gateway mode: hands a validated job to the forwarder (which answers it).
  void forward(const Client& client, const Envelope& envelope, const std::string& kind, const std::string& priority,
               double timeout_s, std::set<std::string> features, const std::string& line, bool every_worker = false);
  /// Queues a job of `kind` for the client on the local executors.
  void submit(const Client& client, const Envelope& envelope, const std::string& kind, const std::string& priority,
              double timeout_s, runtime::JobWork work);

  runtime::Engine& engine_;
  RequestThread requests_;
};

}  // namespace sdxlhost::host::protocol
