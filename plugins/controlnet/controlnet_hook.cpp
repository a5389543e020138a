#include "controlnet_hook.hpp"

#include <ATen/ATen.h>

#include "control_image.hpp"
#include "controlnet_request.hpp"
#include "guidance_window.hpp"
#include "prepared_control.hpp"
#include "sdxlhost/sdk/context.hpp"
#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/request.hpp"

namespace sdxlhost::controlnet {
namespace {

using sdk::Error;
using sdk::ErrorCode;

/// Pixels per latent pixel of the ControlNet's conditioning embedding (one stride-2 conv per
/// channel entry after the first): the control image's size is the latents' size times this.
std::int64_t cond_downscale(const nn::ControlNetConfig& config) {
  return std::int64_t{1} << (config.conditioning_embedding_out_channels.size() - 1);
}

/// The conditional half of a CFG batch ([uncond, cond]), or all of it.
at::Tensor rows(const at::Tensor& t, bool cond_only) {
  if (!cond_only || t.dim() == 0 || t.size(0) < 2) return t;
  return t.chunk(2)[1];
}

/// The unit's control image at the size the latents need, batched to `batch` rows (cached).
at::Tensor batched_cond(PreparedUnit& unit, const at::Tensor& sample, std::int64_t batch) {
  const std::int64_t factor = cond_downscale(unit.model->config());
  const std::int64_t height = sample.size(2) * factor, width = sample.size(3) * factor;
  if (!unit.cond.defined() || unit.cond.size(2) != height || unit.cond.size(3) != width)
    unit.cond = control_tensor(unit.control, static_cast<int>(height), static_cast<int>(width));
  return unit.cond.expand({batch, -1, -1, -1});
}

/// One unit's residuals for this step, scaled, on the sample's dtype and device, for every row.
sdk::UNetResiduals run_unit(PreparedUnit& unit, const sdk::DenoiseStepInput& input, bool cond_only,
                            bool guess_mode) {
  const auto& model = *unit.model;
  const auto to_model = [&](const at::Tensor& t) { return t.to(model.device(), model.dtype()); };
  const at::Tensor sample = rows(input.sample, cond_only);
  const at::Tensor cond = batched_cond(unit, sample, sample.size(0));
  // guess_mode scales each residual differently, so the model's uniform scale is left at 1
  sdk::UNetResiduals out = model.forward(
      to_model(sample), input.timestep.dim() == 0 ? input.timestep : to_model(rows(input.timestep, cond_only)),
      to_model(rows(input.encoder_hidden_states, cond_only)), to_model(rows(input.text_embeds, cond_only)),
      to_model(rows(input.time_ids, cond_only)), to_model(cond), guess_mode ? 1.0 : unit.conditioning_scale);
  if (guess_mode) {
    // diffusers: logspace(-1, 0, n + 1) x conditioning_scale, float32, shallow to deep, last = mid
    const auto n = static_cast<std::int64_t>(out.down.size());
    const at::Tensor scales = at::logspace(-1, 0, n + 1, 10.0, at::kFloat) * unit.conditioning_scale;
    for (std::int64_t k = 0; k < n; ++k) out.down[k] = out.down[k] * scales[k].to(out.down[k].device());
    out.mid = out.mid * scales[n].to(out.mid.device());
  }
  const auto to_sample = [&](const at::Tensor& t) {
    const at::Tensor moved = t.to(input.sample.device(), input.sample.scalar_type());
    return cond_only ? at::cat({at::zeros_like(moved), moved}) : moved;
  };
  for (auto& d : out.down) d = to_sample(d);
  out.mid = to_sample(out.mid);
  return out;
}

}  // namespace

void accumulate_residuals(sdk::UNetResiduals& into, const sdk::UNetResiduals& add) {
  if (into.down.empty()) {
    into.down = add.down;
  } else {
    if (into.down.size() != add.down.size())
      throw Error(ErrorCode::PluginError, "ControlNet residuals of different UNets cannot be summed (" +
                                              std::to_string(into.down.size()) + " vs " +
                                              std::to_string(add.down.size()) + " skip connections)");
    for (std::size_t k = 0; k < into.down.size(); ++k) into.down[k] = into.down[k] + add.down[k];
  }
  if (add.mid.defined()) into.mid = into.mid.defined() ? into.mid + add.mid : add.mid;
}

bool ControlNetHook::applies(const sdk::GenerationRequest& request) const {
  return !parse_controlnet_request(request.controlnet, *settings_).units.empty();
}

void ControlNetHook::before_unet(sdk::Context& context, const sdk::DenoiseStepInput& input,
                                 sdk::UNetResiduals& residuals) const {
  auto& prepared = context.get<PreparedControl>(kPreparedSlot);
  // The loop doubles the batch for classifier-free guidance ([uncond, cond]).
  const bool cfg = input.sample.size(0) == 2 * static_cast<std::int64_t>(context.request().batch_size);
  const bool cond_only = prepared.guess_mode && cfg;
  for (auto& unit : prepared.units) {
    const double keep = controlnet_keep(input.step, input.total_steps, unit.guidance_start, unit.guidance_end);
    if (keep == 0.0) continue;  // its residuals would be exactly zero: skip the forward
    accumulate_residuals(residuals, run_unit(unit, input, cond_only, prepared.guess_mode));
  }
}

}  // namespace sdxlhost::controlnet
