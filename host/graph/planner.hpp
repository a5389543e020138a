#pragma once
/// @file planner.hpp
/// The one place that decides what runs: picks the stages of enabled plugins that apply to a
/// request, orders them (slot dependencies first, then Stage::order()), checks every slot read
/// is written by an earlier stage, and refuses requests needing a disabled feature. Running a
/// plan is plan_runner.hpp's.

#include <memory>
#include <string>
#include <vector>

#include "sdxlhost/sdk/request.hpp"
#include "sdxlhost/sdk/stage.hpp"

namespace sdxlhost::host {

class PluginSet;

/// An ordered, validated list of stages for one request. Each stage pointer keeps its
/// plugin's library (and snapshot) alive.
struct Plan {
  /// The stages in run order (aliasing pointers that keep the plugin snapshot alive).
  std::vector<std::shared_ptr<const sdk::Stage>> stages;
  /// Per stage: what it must keep mapped (the plan's snapshot), set as the thread's code anchor
  /// while it runs, so models it caches keep their plugins' code mapped. May be shorter than
  /// `stages` (then no anchor).
  std::vector<std::shared_ptr<const void>> code_anchors;
  /// Stage names in run order (the response's `stages`).
  std::vector<std::string> names() const;
};

/// What to do when a request needs a disabled or missing feature (`on_disabled_feature`).
enum class OnDisabledFeature { Error, Warn };

/// Features a request needs beyond base generation, among those the SDK's request schema
/// declares (sdk::request_schema_features()).
std::vector<std::string> required_features(const sdk::GenerationRequest& request);
/// The same among every feature `plugins` knows (the schema's and those plugins declare).
std::vector<std::string> required_features(const PluginSet& plugins, const sdk::GenerationRequest& request);

/// Builds the plan for `request`. Ordering: a stage runs after every stage that produces a slot
/// it reads (writes it without reading it); among the stages free to run, lower order() (then
/// name) first, so stages that transform a slot (read and write it) keep their order() bands. Throws sdk::Error(FeatureDisabled) naming the feature and its
/// config key `plugins.enabled.<name>` (with Warn: adds a warning to `warnings` and plans
/// without it); FEATURE_DISABLED naming sdk::kImageGenerationFeature when no applicable stage writes "images";
/// Error(PluginError) naming the stage and slot when a read slot is written by no earlier stage;
/// Error(ValidationError, "data.scheduler" / "data.scheduler_options.<key>") for an unknown
/// scheduler or a bad option when the snapshot has any scheduler registered.
Plan plan_request(const PluginSet& plugins, const sdk::GenerationRequest& request,
                  OnDisabledFeature on_disabled, std::vector<std::string>& warnings);

/// The plan of a post-process job over images the job already holds (an image message):
/// the applicable stages of `feature`, ordered as plan_request orders them, with the "images"
/// slot counted as written. Throws sdk::Error(FeatureDisabled, `field`) naming the config key
/// when no enabled plugin provides `feature`, Error(PluginError) when none of its stages applies.
Plan plan_postprocess(const PluginSet& plugins, const sdk::GenerationRequest& request, const std::string& feature,
                      const std::string& field);

}  // namespace sdxlhost::host
