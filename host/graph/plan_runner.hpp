#pragma once
/// @file plan_runner.hpp
/// Runs a plan the planner made: each stage in order on the job's thread, with cancellation
/// checked between stages, the stage's plugin snapshot as the thread's code anchor, a JobScope
/// for progress and cancellation inside models, and one error mapping for what a stage throws.

#include <string>

#include "host/graph/planner.hpp"
#include "sdxlhost/sdk/context.hpp"
#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/job_scope.hpp"

namespace sdxlhost::host {

/// True when an exception message is an allocation failure (libtorch CPU/CUDA, std::bad_alloc).
bool is_allocation_failure(const std::string& message);

/// Error(PluginError) saying that `stage` ran out of memory (`detail`: the first line of the
/// allocator's message, may be empty).
sdk::Error out_of_memory(const std::string& stage, const std::string& detail);

/// Runs the plan's stages in order over `context`, checking cancellation between stages.
/// sdk::Error passes through; an allocation failure (std::bad_alloc, libtorch's "can't allocate
/// memory") becomes Error(PluginError) "stage 'NAME' ran out of memory"; any other exception
/// becomes Error(InternalError) naming the stage.
/// Each stage runs inside an sdk::JobScope bound to `context` (and `details`, may be null), so
/// code inside models can check cancellation and report progress within the stage; each stage's
/// start is reported as progress (stage, step 0, total_steps 0).
void run_plan(const Plan& plan, sdk::Context& context, const sdk::DetailSink* details = nullptr);

}  // namespace sdxlhost::host
