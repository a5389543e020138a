#include "host/graph/planner.hpp"

#include <algorithm>
#include <set>
#include <utility>

#include "host/common/client_text.hpp"
#include "host/plugins/plugin_manager.hpp"
#include "sdxlhost/nn/scheduler_defaults.hpp"
#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/registries.hpp"
#include "sdxlhost/sdk/request_features.hpp"

namespace sdxlhost::host {
namespace {

using sdk::Error;
using sdk::ErrorCode;
using StagePtr = std::shared_ptr<sdk::Stage>;

/// The features `request` asks for, among those the snapshot knows (request_features.hpp).
std::vector<sdk::RequestFeature> feature_needs(const std::vector<sdk::RequestFeature>& features,
                                               const sdk::GenerationRequest& request) {
  std::vector<sdk::RequestFeature> needs;
  for (const auto& feature : features)
    if (sdk::feature_requested(feature, request)) needs.push_back(feature);
  return needs;
}

std::vector<std::string> names_of(const std::vector<sdk::RequestFeature>& features) {
  std::vector<std::string> out;
  for (const auto& feature : features) out.push_back(feature.name);
  return out;
}

bool has(const std::vector<std::string>& items, const std::string& item) {
  return std::find(items.begin(), items.end(), item) != items.end();
}

std::string disabled_message(const PluginSet& plugins, const std::string& feature) {
  return "the request needs feature '" + feature + "', but " + plugins.unavailable_reason(feature);
}

std::vector<StagePtr> applicable_stages(const sdk::Registries& registries,
                                        const sdk::GenerationRequest& request) {
  std::vector<StagePtr> out;
  for (const auto& stage : registries.stages()) {
    bool applies = false;
    try {
      applies = stage->applies(request);
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      throw Error(ErrorCode::PluginError, "stage '" + stage->name() + "' failed in applies(): " + client_message(e));
    }
    if (applies) out.push_back(stage);
  }
  return out;
}

/// Checks data.scheduler (and data.scheduler_options) against the snapshot's scheduler
/// registry, when any plugin registered schedulers: an unknown name is VALIDATION_ERROR listing
/// the known ones (field data.scheduler); the options are tried on a throwaway instance over
/// SDXL's default scheduler config, so a bad one gets the plugin's own error
/// (field data.scheduler_options.<key>). Without schedulers (test-only setups) nothing is checked.
void check_scheduler(const sdk::Registries& registries, const sdk::GenerationRequest& request) {
  if (registries.scheduler_names().empty()) return;
  registries.resolve_scheduler(request.scheduler, "data.scheduler");
  try {
    registries.create_scheduler(request.scheduler, nn::sdxl_scheduler_config(), request.scheduler_options,
                                "data.scheduler");
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(ErrorCode::PluginError,
                "scheduler '" + request.scheduler + "' failed to build from the options: " + client_message(e),
                "data.scheduler_options");
  }
}

/// Stage `b` must run after `a` when b reads a slot that a produces without reading it itself
/// (a pure producer); stages that transform a slot (read and write it) are ordered by order().
bool must_precede(const sdk::Stage& a, const sdk::Stage& b) {
  const auto a_reads = a.reads();
  for (const auto& slot : b.reads())
    if (has(a.writes(), slot) && !has(a_reads, slot)) return true;
  return false;
}

bool runs_before(const StagePtr& x, const StagePtr& y) {
  if (x->order() != y->order()) return x->order() < y->order();
  return x->name() < y->name();
}

/// Topological order by producer dependencies; ties (ready stages) by order() then name.
std::vector<StagePtr> order_stages(std::vector<StagePtr> stages) {
  std::sort(stages.begin(), stages.end(), runs_before);
  const std::size_t n = stages.size();
  std::vector<std::vector<std::size_t>> after(n);
  std::vector<int> pending_before(n, 0);
  for (std::size_t a = 0; a < n; ++a)
    for (std::size_t b = 0; b < n; ++b)
      if (a != b && must_precede(*stages[a], *stages[b])) {
        after[a].push_back(b);
        ++pending_before[b];
      }
  std::vector<StagePtr> ordered;
  std::vector<bool> done(n, false);
  while (ordered.size() < n) {
    std::size_t next = n;
    for (std::size_t i = 0; i < n && next == n; ++i)
      if (!done[i] && pending_before[i] == 0) next = i;  // stages are sorted: first ready wins
    if (next == n) {
      std::string cycle;
      for (std::size_t i = 0; i < n; ++i)
        if (!done[i]) cycle += (cycle.empty() ? "" : ", ") + stages[i]->name();
      throw Error(ErrorCode::PluginError, "stages depend on each other's slots in a cycle: " + cycle);
    }
    done[next] = true;
    ordered.push_back(stages[next]);
    for (std::size_t b : after[next]) --pending_before[b];
  }
  return ordered;
}

void check_reads_written_earlier(const std::vector<StagePtr>& ordered, std::set<std::string> written = {}) {
  for (const auto& stage : ordered) {
    for (const auto& slot : stage->reads())
      if (!written.count(slot))
        throw Error(ErrorCode::PluginError, "stage '" + stage->name() + "' reads slot '" + slot +
                                                "', which no earlier stage of the plan writes");
    for (const auto& slot : stage->writes()) written.insert(slot);
  }
}

/// True when some stage produces images (writes "images" without reading it): base generation.
/// A post-process stage alone (reads and writes "images") does not count.
bool produces_images(const std::vector<StagePtr>& ordered) {
  return std::any_of(ordered.begin(), ordered.end(), [](const StagePtr& s) {
    return has(s->writes(), sdk::slots::kImages) && !has(s->reads(), sdk::slots::kImages);
  });
}

}  // namespace

std::vector<std::string> Plan::names() const {
  std::vector<std::string> out;
  out.reserve(stages.size());
  for (const auto& stage : stages) out.push_back(stage->name());
  return out;
}

std::vector<std::string> required_features(const sdk::GenerationRequest& request) {
  return names_of(feature_needs(sdk::request_schema_features(), request));
}

std::vector<std::string> required_features(const PluginSet& plugins, const sdk::GenerationRequest& request) {
  return names_of(feature_needs(plugins.request_features(), request));
}

/// The plan of `ordered` stages, each aliased onto the snapshot so the plan keeps its plugin loaded.
static Plan plan_of(const PluginSet& plugins, const std::vector<StagePtr>& ordered) {
  Plan plan;
  auto owner = plugins.weak_from_this().lock();
  for (const auto& stage : ordered) {
    plan.stages.push_back(owner ? std::shared_ptr<const sdk::Stage>(owner, stage.get())
                                : std::shared_ptr<const sdk::Stage>(stage));
    plan.code_anchors.push_back(owner ? std::shared_ptr<const void>(owner)
                                      : plugins.stage_anchor(stage->name()));
  }
  return plan;
}

Plan plan_postprocess(const PluginSet& plugins, const sdk::GenerationRequest& request, const std::string& feature,
                      const std::string& field) {
  if (!plugins.feature_enabled(feature))
    throw Error(ErrorCode::FeatureDisabled, disabled_message(plugins, feature), field);
  std::vector<StagePtr> stages;
  for (const auto& stage : applicable_stages(plugins.registries(), request))
    if (stage->feature() == feature) stages.push_back(stage);
  if (stages.empty())
    throw Error(ErrorCode::PluginError, "no stage of feature '" + feature + "' applies to this request", field);
  auto ordered = order_stages(stages);
  check_reads_written_earlier(ordered, {sdk::slots::kImages});
  return plan_of(plugins, ordered);
}

Plan plan_request(const PluginSet& plugins, const sdk::GenerationRequest& request,
                  OnDisabledFeature on_disabled, std::vector<std::string>& warnings) {
  for (const auto& need : feature_needs(plugins.request_features(), request)) {
    if (plugins.feature_enabled(need.name)) continue;
    const std::string key = plugins.feature_config_key(need.name);
    if (on_disabled == OnDisabledFeature::Error)
      throw Error(ErrorCode::FeatureDisabled, disabled_message(plugins, need.name), need.field);
    warnings.push_back("feature '" + need.name + "' is disabled or missing (" + key +
                       "); the request runs without it (" + need.field + " ignored)");
  }

  check_scheduler(plugins.registries(), request);
  auto ordered = order_stages(applicable_stages(plugins.registries(), request));
  if (!produces_images(ordered))
    throw Error(ErrorCode::FeatureDisabled,
                "no enabled plugin generates images for this request: " +
                    disabled_message(plugins, sdk::kImageGenerationFeature));
  check_reads_written_earlier(ordered);
  return plan_of(plugins, ordered);
}

}  // namespace sdxlhost::host
