#include "host/protocol/wire_sink.hpp"

#include "host/protocol/envelope.hpp"

namespace sdxlhost::host::protocol {

nlohmann::json encode_progress(const runtime::ProgressEvent& event) {
  nlohmann::json detail;
  if (event.detail)
    detail = {{"part", event.detail->part}, {"index", event.detail->index}, {"count", event.detail->count}};
  return progress_event(event.request_id, event.stage, event.step, event.total_steps, event.elapsed_s, detail);
}

void WireSink::progress(const runtime::ProgressEvent& event) { connection_->send(to_line(encode_progress(event))); }

void WireSink::result(const std::string& request_id, nlohmann::json data, const std::vector<std::string>& warnings) {
  connection_->send(to_line(success_response(request_id, std::move(data), warnings)));
}

void WireSink::error(const std::string& request_id, const sdk::Error& error, const std::vector<std::string>& warnings) {
  connection_->send(to_line(error_response(request_id, error, warnings)));
}

}  // namespace sdxlhost::host::protocol
