#include "sdxlhost/sdk/context.hpp"

#include <utility>

#include "sdxlhost/sdk/request.hpp"

namespace sdxlhost::sdk {

Context::Context(std::shared_ptr<const GenerationRequest> request, ContextServices services,
                 std::shared_ptr<CancellationToken> token)
    : request_(std::move(request)), services_(std::move(services)), token_(std::move(token)) {
  if (!request_) throw Error(ErrorCode::InternalError, "Context needs a request");
  if (!token_) token_ = std::make_shared<CancellationToken>();
}

std::vector<std::string> Context::slot_names() const {
  std::vector<std::string> names;
  names.reserve(slots_.size());
  for (const auto& [name, value] : slots_) names.push_back(name);
  return names;
}

void Context::report_progress(std::string_view stage, int step, int total_steps) const {
  if (services_.progress) services_.progress(stage, step, total_steps);
}

bool Context::cancelled() const {
  return token_->cancelled() || std::chrono::steady_clock::now() >= services_.deadline;
}

void Context::throw_if_cancelled() const {
  if (token_->cancelled()) throw Error(ErrorCode::Cancelled, "the job was cancelled");
  if (std::chrono::steady_clock::now() >= services_.deadline)
    throw Error(ErrorCode::Timeout, "the job exceeded its timeout", "data.metadata.timeout");
}

void Context::log(LogLevel level, std::string_view message) const {
  if (services_.log) services_.log(level, message);
}

ModelAccess& Context::models() const {
  if (!services_.models) throw Error(ErrorCode::InternalError, "no model access in this context");
  return *services_.models;
}

const Registries& Context::registries() const {
  if (!services_.registries) throw Error(ErrorCode::InternalError, "no registries in this context");
  return *services_.registries;
}

void Context::missing_slot(const std::string& slot) const {
  throw Error(ErrorCode::InternalError, "slot '" + slot + "' was read before any stage wrote it");
}

void Context::wrong_type(const std::string& slot, const std::type_info& want,
                         const std::type_info& have) const {
  throw Error(ErrorCode::InternalError, "slot '" + slot + "' holds " + have.name() +
                                            ", but a stage read it as " + want.name());
}

}  // namespace sdxlhost::sdk
