#include "host/transport/pipe_path.hpp"

#include <atomic>
#include <cstdlib>

#include "host/transport/connection.hpp"

namespace sdxlhost::host::transport {

std::string pipe_endpoint(const std::string& pipe_name) {
#if defined(_WIN32)
  if (pipe_name.rfind("\\\\.\\pipe\\", 0) == 0) return pipe_name;
  return "\\\\.\\pipe\\" + pipe_name;
#else
  if (!pipe_name.empty() && pipe_name.front() == '/') return pipe_name;
  const char* tmp = std::getenv("TMPDIR");
  std::string dir = (tmp && *tmp) ? tmp : "/tmp";
  if (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return dir + "/CoreFxPipe_" + pipe_name;
#endif
}

std::uint64_t next_connection_id() {
  static std::atomic<std::uint64_t> counter{0};
  return ++counter;
}

}  // namespace sdxlhost::host::transport
