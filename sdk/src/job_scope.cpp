#include "sdxlhost/sdk/job_scope.hpp"

#include "sdxlhost/sdk/context.hpp"

namespace sdxlhost::sdk {
namespace {

thread_local const Context* t_context = nullptr;
thread_local const DetailSink* t_details = nullptr;

}  // namespace

JobScope::JobScope(const Context& context, const DetailSink* details)
    : previous_context_(t_context), previous_details_(t_details) {
  t_context = &context;
  t_details = details;
}

JobScope::~JobScope() {
  t_context = previous_context_;
  t_details = previous_details_;
}

const Context* current_job() noexcept { return t_context; }

void check_cancelled() {
  if (t_context) t_context->throw_if_cancelled();
}

void report_detail(std::string_view part, int index, int count) {
  if (t_details && *t_details) (*t_details)(part, index, count);
}

}  // namespace sdxlhost::sdk
