// Running a plan (see plan_runner.hpp).
#include "host/graph/plan_runner.hpp"

#include <chrono>
#include <new>

#include "host/common/client_text.hpp"
#include "host/metrics/metrics.hpp"
#include "host/plugins/code_anchor.hpp"
#include "sdxlhost/sdk/stage.hpp"

namespace sdxlhost::host {

using sdk::Error;
using sdk::ErrorCode;

bool is_allocation_failure(const std::string& message) {
  // libtorch's CPU allocator ("DefaultCPUAllocator: can't allocate memory"), CUDA's caching
  // allocator ("CUDA out of memory"), and std::bad_alloc's own text.
  for (const char* marker : {"can't allocate memory", "out of memory", "bad_alloc", "Cannot allocate memory"})
    if (message.find(marker) != std::string::npos) return true;
  return false;
}

sdk::Error out_of_memory(const std::string& stage, const std::string& detail) {
  std::string text = detail;
  if (auto newline = text.find('\n'); newline != std::string::npos) text.resize(newline);
  return Error(ErrorCode::PluginError, "stage '" + stage + "' ran out of memory" +
                                           (text.empty() ? std::string() : " (" + text + ")") +
                                           "; the job was stopped and its memory freed (try a smaller size or batch)");
}

void run_plan(const Plan& plan, sdk::Context& context, const sdk::DetailSink* details) {
  for (std::size_t i = 0; i < plan.stages.size(); ++i) {
    const auto& stage = *plan.stages[i];
    context.throw_if_cancelled();
    ScopedCodeAnchor anchor(i < plan.code_anchors.size() ? plan.code_anchors[i] : nullptr);
    sdk::JobScope job_scope(context, details);  // sdk::check_cancelled / report_detail inside models
    context.report_progress(stage.name(), 0, 0);  // every stage reports its start
    const auto start = std::chrono::steady_clock::now();
    try {
      stage.run(context);
    } catch (const Error&) {
      throw;
    } catch (const std::bad_alloc&) {
      throw out_of_memory(stage.name(), "");
    } catch (const std::exception& e) {
      if (is_allocation_failure(e.what())) throw out_of_memory(stage.name(), e.what());
      context.log(sdk::LogLevel::Error, "stage " + stage.name() + " failed: " + e.what());  // with any backtrace
      throw Error(ErrorCode::InternalError, "stage '" + stage.name() + "' failed: " + client_message(e));
    } catch (...) {
      throw Error(ErrorCode::InternalError,
                  "stage '" + stage.name() + "' threw a non-standard exception");
    }
    const auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start);
    context.log(sdk::LogLevel::Debug, "stage " + stage.name() + " took " + std::to_string(ms.count()) + " ms");
    metrics::Registry::global().observe_stage(stage.name(), ms.count() / 1000.0);
  }
}

}  // namespace sdxlhost::host
