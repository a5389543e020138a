#pragma once
/// @file wire_sink.hpp
/// The JobSink of the line transports (pipe, stdio): every event becomes one NDJSON line of the
/// wire (envelope.hpp) on the client's connection. `started` has no wire message and is not sent.
/// Thread-safety: as transport::Connection::send (any thread; one thread's lines keep their order).

#include <memory>

#include "host/runtime/job_sink.hpp"
#include "host/transport/connection.hpp"

namespace sdxlhost::host::protocol {

/// {"message_type":"progress",...} for a progress event (envelope.hpp's progress_event).
nlohmann::json encode_progress(const runtime::ProgressEvent& event);

/// Encodes a client's events as wire lines on its connection.
class WireSink : public runtime::JobSink {
 public:
  explicit WireSink(std::shared_ptr<transport::Connection> connection) : connection_(std::move(connection)) {}

  void progress(const runtime::ProgressEvent& event) override;
  void result(const std::string& request_id, nlohmann::json data, const std::vector<std::string>& warnings) override;
  void error(const std::string& request_id, const sdk::Error& error, const std::vector<std::string>& warnings) override;

  /// The connection the lines go to.
  const std::shared_ptr<transport::Connection>& connection() const { return connection_; }

 private:
  std::shared_ptr<transport::Connection> connection_;
};

}  // namespace sdxlhost::host::protocol
