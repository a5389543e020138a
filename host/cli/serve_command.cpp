// `sdxl-host serve`: one host (engine + dispatcher) behind one transport, with signals:
// SIGHUP = reload_config, SIGINT/SIGTERM = graceful shutdown. The transport is picked once
// (choose_transport): the pipe, stdin/stdout (--stdio), or the broker's jobs queue
// (cluster.role = worker); a gateway is the pipe (or stdio) with jobs forwarded to the broker
// (docs/scale-out.md). Everything after the choice treats the transports alike.
#include <csignal>
#include <cstdio>
#include <iostream>

#include <boost/asio.hpp>

#include "host/cli/commands.hpp"
#include "host/cluster/gateway.hpp"
#include "host/cluster/worker.hpp"
#include "host/common/logging.hpp"
#include "host/common/memory.hpp"
#include "host/metrics/metrics_http.hpp"
#include "host/runtime/device_check.hpp"
#include "host/runtime/host_service.hpp"
#include "host/runtime/threads.hpp"
#include "host/transport/pipe_path.hpp"
#include "host/transport/pipe_server.hpp"
#include "host/transport/stdio_channel.hpp"
#include "host/transport/transport.hpp"
#include "sdxlhost/nn/cpu_runtime.hpp"

#if defined(_WIN32)
#include <io.h>
#define SDXLHOST_DUP _dup
#define SDXLHOST_DUP2 _dup2
#else
#include <unistd.h>
#define SDXLHOST_DUP ::dup
#define SDXLHOST_DUP2 ::dup2
#endif

namespace sdxlhost::host::cli {
namespace {

namespace asio = boost::asio;

/// Re-arms itself; SIGHUP reloads, the others shut down.
void wait_for_signal(asio::signal_set& signals, runtime::Engine& engine) {
  signals.async_wait([&signals, &engine](boost::system::error_code ec, int signal) {
    if (ec) return;  // cancelled at shutdown
    auto log = component_logger("host");
#if defined(SIGHUP)
    if (signal == SIGHUP) {
      log->info("SIGHUP received: reloading the config and the plugin folder");
      std::vector<std::string> warnings;
      try {
        engine.reload_config(warnings);
        for (const auto& warning : warnings) log->warn("SIGHUP reload: {}", warning);
      } catch (const std::exception& error) {
        log->error("SIGHUP: {}", error.what());
      }
      wait_for_signal(signals, engine);
      return;
    }
#endif
    engine.request_shutdown(signal == SIGINT ? "SIGINT" : "SIGTERM");
    wait_for_signal(signals, engine);
  });
}

/// Keeps the real stdout for protocol lines only: returns a duplicate of fd 1 and points fd 1 at
/// stderr, so a stray print from any library cannot corrupt the NDJSON stream.
int reserve_stdout_for_protocol() {
  std::fflush(stdout);
  int protocol_fd = SDXLHOST_DUP(1);
  if (protocol_fd < 0) return 1;
  SDXLHOST_DUP2(2, 1);
  return protocol_fd;
}

/// The transport this serve runs behind: the broker for a worker, stdin/stdout with --stdio,
/// otherwise the pipe.
std::unique_ptr<transport::Transport> choose_transport(const Arguments& args, const HostConfig& config,
                                                       asio::io_context& io, runtime::HostService& host) {
  auto log = component_logger("host");
  if (config.cluster.role == "worker") {
    log->info("serving as a cluster worker (no pipe): jobs from {}", config.cluster.jobs_queue);
    return std::make_unique<cluster::Worker>(config, host);
  }
  if (args.has_flag("--stdio")) {
    log->info("serving on stdin/stdout");
    return std::make_unique<transport::StdioChannel>(io, host, config.limits.max_message_bytes, 0,
                                                     reserve_stdout_for_protocol());
  }
  transport::PipeServerSettings settings{transport::pipe_endpoint(config.pipe_name), config.socket_mode,
                                         config.limits.max_message_bytes, config.limits.max_client_backlog_bytes};
  return std::make_unique<transport::PipeServer>(io, settings, host);
}

}  // namespace

int serve_command(const Arguments& args) {
#if defined(SIGPIPE)
  std::signal(SIGPIPE, SIG_IGN);  // a client gone mid-write is an error code, not a signal
#endif
  std::vector<std::string> warnings;
  HostConfig config = config_from_arguments(args, warnings);
  runtime::check_device(config.device);  // a CPU-only build refuses "cuda" here, once
  auto log = component_logger("host");
  int threads = runtime::apply_thread_count(config.threads);
  log->info("sdxl-host starting (config {}, {} threads, device {})",
            config.source_file.empty() ? "<defaults>" : config.source_file.string(), threads, config.device);
  log->info("BLAS: {}; {}; OpenMP: {}; allocator: {}", nn::blas_choice().detail, nn::blas_choice().threading_detail,
            nn::blas_choice().openmp, host::allocator_name());

  asio::io_context io;
  auto guard = asio::make_work_guard(io);
  runtime::HostService host(config, warnings);
  std::unique_ptr<cluster::Gateway> gateway;  // cluster.role = gateway: jobs go to the broker
  if (config.cluster.role == "gateway") {
    gateway = std::make_unique<cluster::Gateway>(config);
    host.set_job_forwarder(gateway.get());
  }
  std::unique_ptr<transport::Transport> transport = choose_transport(args, config, io, host);
#if defined(SIGHUP)
  asio::signal_set signals(io, SIGINT, SIGTERM, SIGHUP);
#else
  asio::signal_set signals(io, SIGINT, SIGTERM);
#endif

  host.set_on_stopped([&] {
    asio::post(io, [&] {  // after the last job answered: a worker publishes its answer first
      transport->stop();  // a client still writing must not keep the io_context busy
      boost::system::error_code ignored;
      signals.cancel(ignored);
      guard.reset();
    });
  });
  host.set_on_limits_changed([&](std::size_t bytes) {
    asio::post(io, [&, bytes] { transport->set_max_line_bytes(bytes); });
  });
  host.set_client_count([&] { return transport->client_count(); });
  host.start();
  if (gateway) gateway->start();
  transport->start([&host] { host.end_of_input("stdin closed"); });
  std::unique_ptr<metrics::HttpListener> metrics_http;  // off unless metrics.listen is set
  runtime::Engine& engine = host.engine();
  if (!config.metrics.listen.empty())
    metrics_http = std::make_unique<metrics::HttpListener>(
        config.metrics.listen,
        metrics::HttpHandlers{[&engine] { return engine.metrics_text(); }, [&engine] { return !engine.stopping(); },
                              [&engine, &transport] { return engine.ready() && transport->connected(); }});
  wait_for_signal(signals, engine);
  io.run();
  host.wait_stopped();
  metrics_http.reset();
  log->info("sdxl-host stopped");
  return 0;
}

}  // namespace sdxlhost::host::cli
