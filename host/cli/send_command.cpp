// `sdxl-host send`: the operator's and scripts' client. Sends one message, prints every line
// that comes back (progress, then the response), exits 0 only when the response is a success.
#include <iostream>

#include "host/cli/commands.hpp"
#include "host/cli/request_file.hpp"
#include "host/transport/pipe_client.hpp"
#include "host/transport/pipe_path.hpp"

namespace sdxlhost::host::cli {
namespace {

nlohmann::json message_from_options(const Arguments& args) {
  nlohmann::json envelope = {{"message_type", *args.get("--message")}};
  if (auto data = args.get("--data")) {
    envelope["data"] = nlohmann::json::parse(*data, nullptr, false);
    if (envelope["data"].is_discarded()) throw std::invalid_argument("--data is not valid JSON");
  }
  ensure_request_id(envelope);
  return envelope;
}

}  // namespace

int send_command(const Arguments& args) {
  auto pipe = args.get("--pipe");
  if (!pipe) throw std::invalid_argument("send needs --pipe NAME");
  nlohmann::json envelope;
  if (args.get("--message")) envelope = message_from_options(args);
  else if (args.positional.size() == 1) envelope = read_request_file(args.positional.front());
  else throw std::invalid_argument("send needs REQUEST.json or --message TYPE");
  std::string request_id = envelope["request_id"].get<std::string>();
  double timeout_s = args.get("--timeout") ? std::stod(*args.get("--timeout")) : 3600.0;

  transport::PipeClient client(transport::pipe_endpoint(*pipe));
  if (!client.send_line(envelope.dump())) {
    std::cerr << "sdxl-host send: the host closed the connection\n";
    return 1;
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<long long>(timeout_s * 1000));
  while (std::chrono::steady_clock::now() < deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    auto line = client.read_line(left);
    if (!line) break;
    std::cout << *line << std::endl;
    nlohmann::json message = nlohmann::json::parse(*line, nullptr, false);
    if (!message.is_object() || message.value("message_type", "") != "response") continue;
    auto id = message.find("request_id");
    if (id != message.end() && id->is_string() && *id != request_id) continue;
    return message.value("success", false) ? 0 : 1;
  }
  std::cerr << "sdxl-host send: no response for " << request_id
            << (client.closed() ? " (connection closed)" : " (timed out)") << "\n";
  return 1;
}

}  // namespace sdxlhost::host::cli
