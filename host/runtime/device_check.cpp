#include "host/runtime/device_check.hpp"

#include <ATen/Context.h>
#include <ATen/detail/CUDAHooksInterface.h>

#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::host::runtime {

void check_device(const std::string& device) {
  if (device == "cpu") return;
  if (!at::hasCUDA())
    throw sdk::Error(sdk::ErrorCode::ValidationError,
                     "device '" + device +
                         "': this sdxl-host build cannot use CUDA (its libtorch is CPU-only, or no CUDA "
                         "device is visible); set \"device\": \"cpu\" or run a CUDA build",
                     "device");
  const int index = device.size() > 5 ? std::stoi(device.substr(5)) : 0;
  const int count = at::detail::getCUDAHooks().getNumGPUs();
  if (index >= count)
    throw sdk::Error(sdk::ErrorCode::ValidationError,
                     "device '" + device + "': " + std::to_string(count) + " CUDA device(s) visible (cuda:0.." +
                         std::to_string(count - 1) + ")",
                     "device");
}

}  // namespace sdxlhost::host::runtime
