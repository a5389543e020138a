#include "host/transport/stdio_channel.hpp"

#include <atomic>
#include <cerrno>
#include <functional>
#include <mutex>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include "host/transport/line_framer.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <stdexcept>
#include <system_error>

#define SDXLHOST_READ ::read
#define SDXLHOST_WRITE ::write

namespace sdxlhost::host::transport {

/// The stdout side: writes whole lines under a mutex.
class StdioChannel::Output : public Connection {
 public:
  explicit Output(int fd) : id_(next_connection_id()), fd_(fd) {}
  std::uint64_t id() const override { return id_; }
  bool is_open() const override { return open_.load(); }
  void close() override { open_.store(false); }

  void send(std::string line) override {
    if (!open_.load()) return;
    line.push_back('\n');
    std::lock_guard<std::mutex> lock(mutex_);
    const char* data = line.data();
    std::size_t left = line.size();
    while (left > 0) {
      auto written = SDXLHOST_WRITE(fd_, data, static_cast<unsigned>(left));
      if (written < 0 && errno == EINTR) continue;
      if (written <= 0) {
        open_.store(false);
        return;
      }
      data += written;
      left -= static_cast<std::size_t>(written);
    }
  }

 private:
  const std::uint64_t id_;
  int fd_;
  std::mutex mutex_;
  std::atomic<bool> open_{true};
};

StdioChannel::StdioChannel(boost::asio::io_context& io, MessageHandler& handler, std::size_t max_line_bytes,
                           int input_fd, int output_fd)
    : io_(io), handler_(handler), max_line_bytes_(max_line_bytes), input_fd_(input_fd),
      output_(std::make_shared<Output>(output_fd)) {
  int fds[2];
  if (::pipe(fds) != 0) throw std::system_error(errno, std::generic_category(), "stdio channel wake pipe");
  wake_read_ = fds[0];
  wake_write_ = fds[1];
  ::fcntl(wake_read_, F_SETFD, FD_CLOEXEC);
  ::fcntl(wake_write_, F_SETFD, FD_CLOEXEC);
  ::fcntl(wake_write_, F_SETFL, O_NONBLOCK);  // stop() never blocks, however often it is called
}

StdioChannel::~StdioChannel() {
  stop();
  if (reader_.joinable()) reader_.join();
  ::close(wake_read_);
  ::close(wake_write_);
}

void StdioChannel::stop() {
  const char byte = 1;
  while (SDXLHOST_WRITE(wake_write_, &byte, 1) < 0 && errno == EINTR) {
  }
}

bool StdioChannel::wait_for_input() {
  for (;;) {
    pollfd fds[2] = {{wake_read_, POLLIN, 0}, {input_fd_, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (fds[0].revents != 0) return false;  // stop requested
    if (fds[1].revents != 0) return true;   // data, end of input or an error: read() tells
  }
}

std::shared_ptr<Connection> StdioChannel::connection() const { return output_; }

void StdioChannel::start(std::function<void()> on_end) {
  reader_ = std::thread([this, on_end = std::move(on_end)] { read_loop(on_end); });
}

void StdioChannel::read_loop(std::function<void()> on_end) {
  std::shared_ptr<Connection> connection = output_;
  MessageHandler& handler = handler_;
  boost::asio::io_context& io = io_;
  LineFramer framer(
      max_line_bytes_,
      [&](std::string&& line) {
        boost::asio::post(io, [&handler, connection, line = std::move(line)]() mutable {
          handler.on_line(connection, std::move(line));
        });
      },
      [&](std::size_t bytes) {
        boost::asio::post(io, [&handler, connection, bytes] { handler.on_oversized(connection, bytes); });
      });
  char buffer[64 * 1024];
  for (;;) {
    if (!wait_for_input()) return;  // stopped: the owner is going away, no on_end
    auto n = SDXLHOST_READ(input_fd_, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    framer.feed(std::string_view(buffer, static_cast<std::size_t>(n)));
  }
  // Input ended: the owner decides (serve --stdio finishes the queued work, then exits).
  if (on_end) boost::asio::post(io, on_end);
}

}  // namespace sdxlhost::host::transport
