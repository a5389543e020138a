#include "host/transport/pipe_client.hpp"

#include <cerrno>
#include <cstring>
#include <stdexcept>

#if defined(_WIN32)
#include <windows.h>
#else
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#endif

namespace sdxlhost::host::transport {
namespace {

/// Removes and returns the first complete line (without its '\n') of `buffer`, if it has one.
std::optional<std::string> take_line(std::string& buffer) {
  auto newline = buffer.find('\n');
  if (newline == std::string::npos) return std::nullopt;
  std::string line = buffer.substr(0, newline);
  buffer.erase(0, newline + 1);
  return line;
}

}  // namespace

#if !defined(_WIN32)

PipeClient::PipeClient(const std::string& endpoint) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (endpoint.size() >= sizeof(address.sun_path))
    throw std::runtime_error("socket path too long: " + endpoint);
  std::memcpy(address.sun_path, endpoint.c_str(), endpoint.size() + 1);
  fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) throw std::runtime_error(std::string("socket(): ") + std::strerror(errno));
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    int error = errno;
    ::close(fd_);
    fd_ = -1;
    throw std::runtime_error("cannot connect to " + endpoint + ": " + std::strerror(error));
  }
}

PipeClient::~PipeClient() { close(); }

void PipeClient::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

bool PipeClient::write(std::string_view bytes) {
  while (!bytes.empty()) {
    if (fd_ < 0) return false;
    ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

std::optional<std::string> PipeClient::read_line(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (auto line = take_line(buffer_)) return line;
    if (closed_ || fd_ < 0) return std::nullopt;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    pollfd poll_fd{fd_, POLLIN, 0};
    int ready = ::poll(&poll_fd, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return std::nullopt;
    char chunk[64 * 1024];
    ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      closed_ = true;
      continue;
    }
    buffer_.append(chunk, static_cast<std::size_t>(n));
  }
}

#else  // Windows named pipe client

PipeClient::PipeClient(const std::string& endpoint) {
  HANDLE pipe = ::CreateFileA(endpoint.c_str(), GENERIC_READ | GENERIC_WRITE, 0, nullptr, OPEN_EXISTING, 0, nullptr);
  if (pipe == INVALID_HANDLE_VALUE) throw std::runtime_error("cannot connect to " + endpoint);
  handle_ = pipe;
}

PipeClient::~PipeClient() { close(); }

void PipeClient::close() {
  if (handle_) ::CloseHandle(static_cast<HANDLE>(handle_));
  handle_ = nullptr;
}

bool PipeClient::write(std::string_view bytes) {
  DWORD written = 0;
  while (!bytes.empty()) {
    if (!handle_ || !::WriteFile(static_cast<HANDLE>(handle_), bytes.data(), static_cast<DWORD>(bytes.size()),
                                 &written, nullptr))
      return false;
    bytes.remove_prefix(written);
  }
  return true;
}

std::optional<std::string> PipeClient::read_line(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (auto line = take_line(buffer_)) return line;
    if (closed_ || !handle_ || std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    DWORD available = 0;
    if (!::PeekNamedPipe(static_cast<HANDLE>(handle_), nullptr, 0, nullptr, &available, nullptr)) {
      closed_ = true;
      continue;
    }
    if (available == 0) {
      ::Sleep(5);
      continue;
    }
    char chunk[64 * 1024];
    DWORD n = 0;
    if (!::ReadFile(static_cast<HANDLE>(handle_), chunk, sizeof chunk, &n, nullptr) || n == 0) {
      closed_ = true;
      continue;
    }
    buffer_.append(chunk, n);
  }
}

#endif

bool PipeClient::send_line(std::string_view line) {
  std::string bytes(line);
  bytes.push_back('\n');
  return write(bytes);
}

}  // namespace sdxlhost::host::transport
