// SDXL UNet2DConditionModel: structure from UNetConfig, parameters bound by diffusers keys.
#include "sdxlhost/nn/unet.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "sdxlhost/nn/unet_encoder.hpp"
#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/job_scope.hpp"

namespace sdxlhost::nn {
namespace {

std::string idx(const std::string& prefix, std::size_t i) { return prefix + "." + std::to_string(i); }

[[noreturn]] void bad_input(const std::string& field, const std::string& message) {
  throw sdk::Error(sdk::ErrorCode::ValidationError, "unet input: " + message, field);
}

/// An up block: resnets over [hidden | skip] (+ a transformer after each), optional upsampler.
struct UpBlock {
  std::vector<ResnetBlock2D> resnets;
  std::vector<Transformer2D> attentions;
  bool has_upsampler = false;
  Upsample2D upsampler;
};

}  // namespace

struct UNet2DConditionModel::Blocks {
  UNetEncoder encoder;
  std::vector<UpBlock> up;
  GroupNorm conv_norm_out;
  Conv2d conv_out;

  void bind(WeightBinder& b, const UNetConfig& c);
};

void UNet2DConditionModel::Blocks::bind(WeightBinder& b, const UNetConfig& c) {
  const auto& channels = c.block_out_channels;
  const std::size_t levels = channels.size();
  const std::int64_t temb = c.time_embed_dim();
  const std::int64_t groups = c.norm_num_groups;
  const double eps = c.norm_eps;
  if (c.down_attention.size() != levels || c.up_attention.size() != levels ||
      c.transformer_depth.size() != levels || c.up_transformer_depth.size() != levels ||
      c.attention_heads.size() != levels) {
    throw sdk::Error(sdk::ErrorCode::ModelLoadError, "unet config: per-level lists differ in length");
  }

  encoder.bind_stem(b, c);
  encoder.bind_body(b, c);

  // Up blocks mirror the down blocks; channel arithmetic as diffusers' UNet2DConditionModel.
  std::int64_t out_ch = channels.back();
  up.resize(levels);
  for (std::size_t i = 0; i < levels; ++i) {
    const std::string prefix = idx("up_blocks", i);
    const std::size_t level = levels - 1 - i;
    const std::int64_t prev_ch = out_ch;
    out_ch = channels[level];
    const std::int64_t in_ch = channels[level == 0 ? 0 : level - 1];
    const std::int64_t heads = c.attention_heads[level];
    UpBlock& block = up[i];
    block.resnets.resize(static_cast<std::size_t>(c.layers_per_block + 1));
    if (c.up_attention[i]) block.attentions.resize(block.resnets.size());
    for (std::size_t j = 0; j < block.resnets.size(); ++j) {
      const std::int64_t skip_ch = j + 1 == block.resnets.size() ? in_ch : out_ch;
      const std::int64_t res_in = j == 0 ? prev_ch : out_ch;
      block.resnets[j].bind(b, idx(prefix + ".resnets", j), res_in + skip_ch, out_ch, temb, groups,
                            eps);
      if (c.up_attention[i]) {
        block.attentions[j].bind(b, idx(prefix + ".attentions", j), out_ch, c.cross_attention_dim,
                                 heads, c.up_transformer_depth[i], c.use_linear_projection, groups);
      }
    }
    block.has_upsampler = i + 1 < levels;
    if (block.has_upsampler) block.upsampler.bind(b, prefix + ".upsamplers.0", out_ch);
  }

  conv_norm_out.bind(b, "conv_norm_out", channels[0], groups, eps);
  conv_out.bind(b, "conv_out", channels[0], c.out_channels, 3);
}

UNet2DConditionModel::UNet2DConditionModel(UNetConfig config, at::ScalarType dtype,
                                           at::Device device)
    : config_(std::move(config)), dtype_(dtype), device_(device), blocks_(std::make_unique<Blocks>()) {}

UNet2DConditionModel::~UNet2DConditionModel() = default;

std::shared_ptr<UNet2DConditionModel> UNet2DConditionModel::load(const UNetConfig& config,
                                                                 const TensorMap& weights,
                                                                 at::ScalarType dtype,
                                                                 at::Device device) {
  if (config.block_out_channels.empty()) {
    throw sdk::Error(sdk::ErrorCode::ModelLoadError, "unet config: no block_out_channels");
  }
  std::shared_ptr<UNet2DConditionModel> model(new UNet2DConditionModel(config, dtype, device));
  WeightBinder binder(weights, dtype, device, "unet");
  model->blocks_->bind(binder, model->config_);
  binder.check_all_used();
  model->slots_ = binder.slots();
  model->weights_ = PatchableWeights("unet", model->slots_);
  return model;
}

std::shared_ptr<UNet2DConditionModel> UNet2DConditionModel::create(
    const UNetConfig& config, const WeightBinder::Initializer& init, at::ScalarType dtype,
    at::Device device) {
  if (config.block_out_channels.empty()) {
    throw sdk::Error(sdk::ErrorCode::ModelLoadError, "unet config: no block_out_channels");
  }
  std::shared_ptr<UNet2DConditionModel> model(new UNet2DConditionModel(config, dtype, device));
  WeightBinder binder(init, dtype, device, "unet");
  model->blocks_->bind(binder, model->config_);
  model->slots_ = binder.slots();
  model->weights_ = PatchableWeights("unet", model->slots_);
  return model;
}

std::shared_ptr<UNet2DConditionModel> UNet2DConditionModel::with_weights(
    const std::map<std::string, at::Tensor>& replaced) const {
  // The copy's layers are bound to the current tensors themselves (same dtype and device: no
  // conversion, no page touched), then the replaced ones take their place. The binder's
  // "load_weights" details are for loading a file: this is part of a stage, so they stay quiet.
  std::optional<sdk::JobScope> quiet;
  if (const sdk::Context* job = sdk::current_job()) quiet.emplace(*job, nullptr);
  auto current = [this](const std::string& key, const std::vector<std::int64_t>&) { return *slots_.at(key); };
  std::shared_ptr<UNet2DConditionModel> copy = create(config_, current, dtype_, device_);
  for (const auto& [key, value] : replaced) copy->weights_.install(key, value);
  copy->channels_last_ = channels_last_;  // the tensors carry their memory format with them
  return copy;
}

TensorMap UNet2DConditionModel::state_dict() const {
  TensorMap map("unet");
  for (const auto& [name, slot] : slots_) map.set(name, *slot);
  return map;
}

at::Tensor UNet2DConditionModel::forward(const at::Tensor& sample_in, const at::Tensor& timestep,
                                         const at::Tensor& encoder_hidden_states,
                                         const at::Tensor& text_embeds, const at::Tensor& time_ids,
                                         const sdk::UNetResiduals* residuals,
                                         const TraceFn& trace) const {
  const UNetConfig& c = config_;
  const Blocks& m = *blocks_;
  auto record = [&](const char* name, const at::Tensor& value) {
    if (trace) trace(name, value);
  };
  UNetEncoder::check_inputs(c, sample_in, encoder_hidden_states, timestep, "unet");
  const std::int64_t batch = sample_in.size(0);
  const auto options = at::TensorOptions().dtype(dtype_).device(device_);
  at::Tensor sample = sample_in.to(options);
  if (channels_last_) sample = sample.contiguous(at::MemoryFormat::ChannelsLast);
  const at::Tensor context = encoder_hidden_states.to(options);

  // 1. time embedding (+ text_time added embedding)
  const at::Tensor emb =
      m.encoder.embed(c, timestep, text_embeds, time_ids, batch, options, "unet", trace);

  // 2. down path, collecting the skips
  sample = m.encoder.conv_in.forward(sample);
  record("conv_in", sample);
  std::vector<at::Tensor> skips = m.encoder.forward_down(sample, emb, context, trace);
  const bool with_residuals = residuals != nullptr && !residuals->down.empty();
  if (with_residuals) {
    if (residuals->down.size() != skips.size()) {
      bad_input("residuals.down", "expected " + std::to_string(skips.size()) +
                                      " down residuals, got " + std::to_string(residuals->down.size()));
    }
    for (std::size_t k = 0; k < skips.size(); ++k) {
      if (residuals->down[k].sizes() != skips[k].sizes()) {
        bad_input("residuals.down", "down residual " + std::to_string(k) + " has the wrong shape");
      }
      skips[k] = skips[k] + residuals->down[k].to(options);
    }
  }

  // 3. mid block
  sample = m.encoder.forward_mid(sample, emb, context, trace);
  if (residuals != nullptr && residuals->mid.defined()) {
    if (residuals->mid.sizes() != sample.sizes()) {
      bad_input("residuals.mid", "the mid residual has the wrong shape");
    }
    sample = sample + residuals->mid.to(options);
  }

  // 4. up path, consuming the skips from the deepest
  for (std::size_t i = 0; i < m.up.size(); ++i) {
    const UpBlock& block = m.up[i];
    for (std::size_t j = 0; j < block.resnets.size(); ++j) {
      sample = at::cat({sample, skips.back()}, 1);
      skips.pop_back();
      sample = block.resnets[j].forward(sample, emb);
      sdk::check_cancelled();  // a cancelled job stops within one block (sdk/job_scope.hpp)
      if (!block.attentions.empty()) sample = block.attentions[j].forward(sample, context);
      sdk::check_cancelled();
    }
    if (block.has_upsampler) {
      // Upsample to the next skip's size: 2x, or the odd size the down path produced.
      sample = block.upsampler.forward(sample, skips.back().sizes().slice(2));
    }
    sdk::report_detail("up_blocks", static_cast<int>(i) + 1, static_cast<int>(m.up.size()));
    if (trace) trace(idx("up_blocks", i), sample);
  }

  // 5. output
  sample = m.conv_norm_out.forward(sample);
  record("conv_norm_out", sample);
  sample = m.conv_out.forward(at::silu(sample));
  record("conv_out", sample);
  // callers (schedulers, the VAE, previews) get the default layout whatever the model runs in
  return channels_last_ ? sample.contiguous() : sample;
}

void UNet2DConditionModel::use_channels_last() {
  if (!weights_.patched_keys().empty()) {
    throw sdk::Error(sdk::ErrorCode::InternalError, "unet: channels-last asked for while weights are patched");
  }
  for (auto& [name, slot] : slots_) {
    if (slot->dim() == 4) *slot = slot->contiguous(at::MemoryFormat::ChannelsLast);
  }
  channels_last_ = true;
}

std::vector<std::string> UNet2DConditionModel::parameter_names() const {
  std::vector<std::string> names;
  names.reserve(slots_.size());
  for (const auto& [name, slot] : slots_) names.push_back(name);
  return names;
}

std::uint64_t UNet2DConditionModel::parameter_bytes() const {
  std::uint64_t bytes = 0;
  for (const auto& [name, slot] : slots_) bytes += slot->nbytes();
  return bytes;
}

bool UNet2DConditionModel::has(const std::string& key) const { return weights_.has(key); }

std::vector<std::string> UNet2DConditionModel::keys() const { return weights_.keys(); }

at::Tensor UNet2DConditionModel::weight(const std::string& key) const { return weights_.weight(key); }

void UNet2DConditionModel::add_delta(const std::string& key, const at::Tensor& delta) {
  weights_.add_delta(key, delta);
}

std::size_t UNet2DConditionModel::restore_weights() { return weights_.restore(); }

std::vector<std::string> UNet2DConditionModel::patched_keys() const { return weights_.patched_keys(); }

}  // namespace sdxlhost::nn
