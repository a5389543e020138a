#include "host/runtime/threads.hpp"

#include <thread>

#include <ATen/Parallel.h>

namespace sdxlhost::host::runtime {

int apply_thread_count(int threads) {
  int wanted = threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency());
  if (wanted < 1) wanted = 1;
  at::set_num_threads(wanted);
  return at::get_num_threads();
}

}  // namespace sdxlhost::host::runtime
