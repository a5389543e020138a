#include "host/transport/pipe_server.hpp"

#include <atomic>
#include <deque>
#include <map>
#include <mutex>

#include <boost/asio.hpp>

#include "host/common/logging.hpp"
#include "host/transport/line_framer.hpp"
#include "sdxlhost/sdk/error.hpp"

#if !defined(_WIN32)
#include <sys/stat.h>
#include <unistd.h>
#endif

namespace sdxlhost::host::transport {
namespace {

namespace asio = boost::asio;
#if defined(_WIN32)
using Stream = asio::windows::stream_handle;
#else
using Stream = asio::local::stream_protocol::socket;
#endif

constexpr std::size_t kReadChunk = 64 * 1024;

/// One client: reads lines, writes queued lines in order; lives while it has operations pending.
class Session : public Connection, public std::enable_shared_from_this<Session> {
 public:
  using ClosedFn = std::function<void(std::uint64_t id)>;

  Session(Stream stream, MessageHandler& handler, std::size_t max_line, std::size_t max_backlog,
          ClosedFn on_closed)
      : id_(next_connection_id()),
        max_backlog_(max_backlog),
        strand_(asio::make_strand(stream.get_executor())),
        stream_(std::move(stream)),
        handler_(handler),
        on_closed_(std::move(on_closed)),
        framer_(max_line, [this](std::string&& line) { handler_.on_line(shared_from_this(), std::move(line)); },
                [this](std::size_t bytes) { handler_.on_oversized(shared_from_this(), bytes); }) {}

  std::uint64_t id() const override { return id_; }
  bool is_open() const override { return open_.load(); }

  void start() {
    component_logger("transport")->debug("client {} connected", id_);
    asio::dispatch(strand_, [self = shared_from_this()] { self->read_more(); });
  }

  void send(std::string line) override {
    if (!open_.load()) return;
    line.push_back('\n');
    asio::post(strand_, [self = shared_from_this(), line = std::move(line)]() mutable {
      if (!self->open_.load()) return;
      if (!self->outbox_.empty() && self->backlog_bytes_ + line.size() > self->max_backlog_) {
        component_logger("transport")->warn("client {} does not read: {} bytes queued for it would exceed "
                                            "limits.max_client_backlog_bytes ({}); disconnecting it",
                                            self->id_, self->backlog_bytes_ + line.size(), self->max_backlog_);
        self->shut("too many bytes queued (the client does not read)");
        return;
      }
      self->backlog_bytes_ += line.size();
      self->outbox_.push_back(std::move(line));
      if (self->outbox_.size() == 1) self->write_next();
    });
  }

  void close() override {
    asio::post(strand_, [self = shared_from_this()] {
      self->closing_ = true;
      if (self->outbox_.empty()) self->shut("closed by host");
    });
  }

  void set_max_line_bytes(std::size_t bytes) {
    asio::post(strand_, [self = shared_from_this(), bytes] { self->framer_.set_max_line_bytes(bytes); });
  }

 private:
  void read_more() {
    stream_.async_read_some(asio::buffer(buffer_.data(), buffer_.size()),
                            asio::bind_executor(strand_, [self = shared_from_this()](
                                                             boost::system::error_code ec, std::size_t n) {
                              self->on_read(ec, n);
                            }));
  }

  void on_read(boost::system::error_code ec, std::size_t n) {
    if (ec) {
      shut(ec == asio::error::eof ? "client disconnected" : ec.message());
      return;
    }
    framer_.feed(std::string_view(buffer_.data(), n));
    if (open_.load() && !closing_) read_more();
  }

  void write_next() {
    asio::async_write(stream_, asio::buffer(outbox_.front()),
                      asio::bind_executor(strand_, [self = shared_from_this()](boost::system::error_code ec,
                                                                               std::size_t) {
                        if (!self->open_.load()) return;  // shut meanwhile: the outbox is gone
                        if (ec) {
                          self->shut("write failed: " + ec.message());
                          return;
                        }
                        self->backlog_bytes_ -= self->outbox_.front().size();
                        self->outbox_.pop_front();
                        if (!self->outbox_.empty()) self->write_next();
                        else if (self->closing_) self->shut("closed by host");
                      }));
  }

  /// Closes the stream once; reports the disconnect to the handler and the server.
  void shut(const std::string& why) {
    if (!open_.exchange(false)) return;
    component_logger("transport")->debug("client {} closed: {}", id_, why);
    boost::system::error_code ignored;
#if !defined(_WIN32)
    stream_.shutdown(Stream::shutdown_both, ignored);
#endif
    stream_.close(ignored);
    outbox_.clear();
    backlog_bytes_ = 0;
    handler_.on_disconnect(shared_from_this());
    if (on_closed_) on_closed_(id_);
  }

  const std::uint64_t id_;
  const std::size_t max_backlog_;
  asio::strand<asio::any_io_executor> strand_;
  Stream stream_;
  MessageHandler& handler_;
  ClosedFn on_closed_;
  LineFramer framer_;
  std::array<char, kReadChunk> buffer_{};
  std::deque<std::string> outbox_;
  std::size_t backlog_bytes_ = 0;  // bytes in outbox_ (strand only)
  std::atomic<bool> open_{true};
  bool closing_ = false;
};

}  // namespace

/// The acceptor and the set of live sessions.
class PipeServer::Impl : public std::enable_shared_from_this<PipeServer::Impl> {
 public:
  Impl(asio::io_context& io, PipeServerSettings settings, MessageHandler& handler)
      : io_(io), settings_(std::move(settings)), handler_(handler), max_line_(settings_.max_line_bytes)
#if !defined(_WIN32)
        , acceptor_(io)
#endif
  {
  }

  void start();
  void stop();

  void set_max_line_bytes(std::size_t bytes) {
    max_line_ = bytes;
    for (auto& session : live_sessions()) session->set_max_line_bytes(bytes);
  }

  std::size_t client_count() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return sessions_.size();
  }

  const std::string& endpoint() const { return settings_.endpoint; }

 private:
  void accept_next();
  void start_session(Stream stream);
  std::vector<std::shared_ptr<Session>> live_sessions() {
    std::vector<std::shared_ptr<Session>> result;
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [id, weak] : sessions_)
      if (auto session = weak.lock()) result.push_back(session);
    return result;
  }
#if !defined(_WIN32)
  void remove_stale_socket();
#endif

  asio::io_context& io_;
  PipeServerSettings settings_;
  MessageHandler& handler_;
  std::atomic<std::size_t> max_line_;
  mutable std::mutex mutex_;
  std::map<std::uint64_t, std::weak_ptr<Session>> sessions_;
  std::atomic<bool> stopped_{false};
  bool bound_ = false;
#if !defined(_WIN32)
  asio::local::stream_protocol::acceptor acceptor_;
#endif
};

void PipeServer::Impl::start_session(Stream stream) {
  std::weak_ptr<Impl> weak_self = shared_from_this();
  auto session = std::make_shared<Session>(std::move(stream), handler_, max_line_.load(), settings_.max_backlog_bytes,
                                           [weak_self](std::uint64_t id) {
                                             if (auto self = weak_self.lock()) {
                                               std::lock_guard<std::mutex> lock(self->mutex_);
                                               self->sessions_.erase(id);
                                             }
                                           });
  {
    std::lock_guard<std::mutex> lock(mutex_);
    sessions_[session->id()] = session;
  }
  session->start();
}

void PipeServer::Impl::stop() {
  if (stopped_.exchange(true)) return;
#if !defined(_WIN32)
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  if (bound_) {
    struct stat info {};
    if (::lstat(settings_.endpoint.c_str(), &info) == 0 && S_ISSOCK(info.st_mode))
      ::unlink(settings_.endpoint.c_str());
  }
#endif
  for (auto& session : live_sessions()) session->close();
  component_logger("transport")->info("stopped serving {}", settings_.endpoint);
}

#if !defined(_WIN32)

void PipeServer::Impl::remove_stale_socket() {
  struct stat info {};
  if (::lstat(settings_.endpoint.c_str(), &info) != 0) return;
  if (!S_ISSOCK(info.st_mode))
    throw sdk::Error(sdk::ErrorCode::InternalError,
                     settings_.endpoint + " exists and is not a socket; refusing to replace it");
  asio::local::stream_protocol::socket probe(io_);
  boost::system::error_code ec;
  probe.connect(asio::local::stream_protocol::endpoint(settings_.endpoint), ec);
  if (!ec)
    throw sdk::Error(sdk::ErrorCode::InternalError,
                     "another host is already serving " + settings_.endpoint);
  ::unlink(settings_.endpoint.c_str());
  component_logger("transport")->info("removed stale socket {}", settings_.endpoint);
}

void PipeServer::Impl::start() {
  remove_stale_socket();
  asio::local::stream_protocol::endpoint endpoint(settings_.endpoint);
  boost::system::error_code ec;
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (ec)
    throw sdk::Error(sdk::ErrorCode::InternalError, "cannot bind " + settings_.endpoint + ": " + ec.message());
  bound_ = true;
  // The mode is set before listen(): until then nobody can connect.
  if (::chmod(settings_.endpoint.c_str(), static_cast<mode_t>(settings_.socket_mode)) != 0)
    throw sdk::Error(sdk::ErrorCode::InternalError, "cannot chmod " + settings_.endpoint);
  acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    throw sdk::Error(sdk::ErrorCode::InternalError, "cannot listen on " + settings_.endpoint + ": " + ec.message());
  component_logger("transport")->info("serving on {} (mode {:o})", settings_.endpoint, settings_.socket_mode);
  accept_next();
}

void PipeServer::Impl::accept_next() {
  acceptor_.async_accept([self = shared_from_this()](boost::system::error_code ec, Stream stream) {
    if (self->stopped_.load()) return;
    if (!ec) self->start_session(std::move(stream));
    else component_logger("transport")->warn("accept failed: {}", ec.message());
    self->accept_next();
  });
}

#else  // Windows: one pipe instance per client, created before each ConnectNamedPipe.

void PipeServer::Impl::start() {
  component_logger("transport")->info("serving on {}", settings_.endpoint);
  accept_next();
}

void PipeServer::Impl::accept_next() {
  HANDLE pipe = ::CreateNamedPipeA(settings_.endpoint.c_str(), PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED,
                                   PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT,
                                   PIPE_UNLIMITED_INSTANCES, 64 * 1024, 64 * 1024, 0, nullptr);
  if (pipe == INVALID_HANDLE_VALUE)
    throw sdk::Error(sdk::ErrorCode::InternalError, "cannot create pipe " + settings_.endpoint);
  auto stream = std::make_shared<Stream>(io_, pipe);
  asio::windows::overlapped_ptr overlapped(
      io_, [self = shared_from_this(), stream](boost::system::error_code ec, std::size_t) {
        if (self->stopped_.load()) return;
        if (!ec) self->start_session(std::move(*stream));
        self->accept_next();
      });
  BOOL connected = ::ConnectNamedPipe(pipe, overlapped.get());
  DWORD error = ::GetLastError();
  if (!connected && error == ERROR_PIPE_CONNECTED) overlapped.complete(boost::system::error_code(), 0);
  else if (!connected && error != ERROR_IO_PENDING)
    overlapped.complete(boost::system::error_code(error, asio::error::get_system_category()), 0);
  else overlapped.release();
}

#endif

PipeServer::PipeServer(asio::io_context& io, PipeServerSettings settings, MessageHandler& handler)
    : impl_(std::make_shared<Impl>(io, std::move(settings), handler)) {}

PipeServer::~PipeServer() { impl_->stop(); }

void PipeServer::start(std::function<void()>) { impl_->start(); }
void PipeServer::stop() { impl_->stop(); }
void PipeServer::set_max_line_bytes(std::size_t bytes) { impl_->set_max_line_bytes(bytes); }
std::size_t PipeServer::client_count() const { return impl_->client_count(); }
const std::string& PipeServer::endpoint() const { return impl_->endpoint(); }

}  // namespace sdxlhost::host::transport
