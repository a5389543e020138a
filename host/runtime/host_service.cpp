#include "host/runtime/host_service.hpp"

namespace sdxlhost::host::runtime {

HostService::HostService(HostConfig config, const std::vector<std::string>& config_warnings)
    : engine_(std::move(config), config_warnings), dispatcher_(engine_) {}

HostService::~HostService() { dispatcher_.stop(); }

void HostService::end_of_input(const std::string& reason) {
  dispatcher_.post_after_pending([this, reason] { engine_.request_shutdown(reason, /*drain=*/true); });
}

}  // namespace sdxlhost::host::runtime
