// The encoder half shared by the SDXL UNet and ControlNet (embeddings, conv_in, down, mid).
#include "sdxlhost/nn/unet_encoder.hpp"

#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/job_scope.hpp"

namespace sdxlhost::nn {
namespace {

std::string idx(const std::string& prefix, std::size_t i) { return prefix + "." + std::to_string(i); }

[[noreturn]] void bad_input(const std::string& component, const std::string& field,
                            const std::string& message) {
  throw sdk::Error(sdk::ErrorCode::ValidationError, component + " input: " + message, field);
}

}  // namespace

void UNetEncoder::bind_stem(WeightBinder& b, const UNetConfig& c) {
  const std::int64_t temb = c.time_embed_dim();
  time_embedding.bind(b, "time_embedding", c.block_out_channels[0], temb);
  if (c.text_time_embedding) {
    add_embedding.bind(b, "add_embedding", c.projection_class_embeddings_input_dim, temb);
  }
  conv_in.bind(b, "conv_in", c.in_channels, c.block_out_channels[0], 3);
}

void UNetEncoder::bind_body(WeightBinder& b, const UNetConfig& c, const SkipFn& on_skip) {
  const auto& channels = c.block_out_channels;
  const std::size_t levels = channels.size();
  const std::int64_t temb = c.time_embed_dim();
  const std::int64_t groups = c.norm_num_groups;
  const double eps = c.norm_eps;
  auto skip = [&](std::int64_t ch) {
    if (on_skip) on_skip(ch);
  };

  std::int64_t out_ch = channels[0];
  down.resize(levels);
  for (std::size_t i = 0; i < levels; ++i) {
    const std::string prefix = idx("down_blocks", i);
    const std::int64_t in_ch = out_ch;
    out_ch = channels[i];
    UNetDownBlock& block = down[i];
    block.resnets.resize(static_cast<std::size_t>(c.layers_per_block));
    if (c.down_attention[i]) block.attentions.resize(block.resnets.size());
    for (std::size_t j = 0; j < block.resnets.size(); ++j) {
      block.resnets[j].bind(b, idx(prefix + ".resnets", j), j == 0 ? in_ch : out_ch, out_ch, temb,
                            groups, eps);
      if (c.down_attention[i]) {
        block.attentions[j].bind(b, idx(prefix + ".attentions", j), out_ch, c.cross_attention_dim,
                                 c.attention_heads[i], c.transformer_depth[i],
                                 c.use_linear_projection, groups);
      }
      skip(out_ch);
    }
    block.has_downsampler = i + 1 < levels;
    if (block.has_downsampler) {
      block.downsampler.bind(b, prefix + ".downsamplers.0", out_ch, false);
      skip(out_ch);
    }
  }

  const std::int64_t mid_ch = channels.back();
  mid_resnet_0.bind(b, "mid_block.resnets.0", mid_ch, mid_ch, temb, groups, eps);
  mid_attention.bind(b, "mid_block.attentions.0", mid_ch, c.cross_attention_dim,
                     c.attention_heads.back(), c.mid_transformer_depth, c.use_linear_projection,
                     groups);
  mid_resnet_1.bind(b, "mid_block.resnets.1", mid_ch, mid_ch, temb, groups, eps);
}

void UNetEncoder::check_inputs(const UNetConfig& c, const at::Tensor& sample,
                               const at::Tensor& encoder_hidden_states, const at::Tensor& timestep,
                               const std::string& component) {
  if (!sample.defined() || sample.dim() != 4 || sample.size(1) != c.in_channels) {
    bad_input(component, "sample", "sample must be (N, " + std::to_string(c.in_channels) + ", H, W)");
  }
  const std::int64_t batch = sample.size(0);
  if (!encoder_hidden_states.defined() || encoder_hidden_states.dim() != 3 ||
      encoder_hidden_states.size(0) != batch ||
      encoder_hidden_states.size(2) != c.cross_attention_dim) {
    bad_input(component, "encoder_hidden_states",
              "encoder_hidden_states must be (N, L, " + std::to_string(c.cross_attention_dim) + ")");
  }
  if (!timestep.defined() || (timestep.numel() != 1 && timestep.numel() != batch)) {
    bad_input(component, "timestep", "timestep must hold 1 or N values");
  }
}

at::Tensor UNetEncoder::embed(const UNetConfig& c, const at::Tensor& timestep,
                              const at::Tensor& text_embeds, const at::Tensor& time_ids,
                              std::int64_t batch, const at::TensorOptions& options,
                              const std::string& component, const TraceFn& trace) const {
  auto record = [&](const char* name, const at::Tensor& value) {
    if (trace) trace(name, value);
  };
  const at::Device device = options.device();
  at::Tensor steps = timestep.to(device).reshape({-1});
  if (steps.numel() == 1) steps = steps.expand({batch});
  const at::Tensor t_features = timestep_features(steps, c.block_out_channels[0],
                                                  c.flip_sin_to_cos, c.freq_shift).to(options);
  record("time_proj", t_features);
  at::Tensor emb = time_embedding.forward(t_features);
  record("time_embedding", emb);
  if (!c.text_time_embedding) return emb;
  if (!text_embeds.defined() || !time_ids.defined() || text_embeds.dim() != 2 ||
      time_ids.dim() != 2 || text_embeds.size(0) != batch || time_ids.size(0) != batch ||
      text_embeds.size(1) + time_ids.size(1) * c.addition_time_embed_dim !=
          c.projection_class_embeddings_input_dim) {
    bad_input(component, "time_ids",
              "text_embeds (N, P) and time_ids (N, k) must satisfy P + k x " +
                  std::to_string(c.addition_time_embed_dim) + " = " +
                  std::to_string(c.projection_class_embeddings_input_dim));
  }
  const at::Tensor id_features = timestep_features(time_ids.to(device).reshape({-1}),
                                                   c.addition_time_embed_dim, c.flip_sin_to_cos,
                                                   c.freq_shift);
  record("add_time_proj", id_features);
  const at::Tensor add_input =
      at::cat({text_embeds.to(device, at::kFloat), id_features.reshape({batch, -1})}, -1)
          .to(options);
  const at::Tensor add_emb = add_embedding.forward(add_input);
  record("add_embedding", add_emb);
  return emb + add_emb;
}

std::vector<at::Tensor> UNetEncoder::forward_down(at::Tensor& sample, const at::Tensor& emb,
                                                  const at::Tensor& context,
                                                  const TraceFn& trace) const {
  std::vector<at::Tensor> skips{sample};
  for (std::size_t i = 0; i < down.size(); ++i) {
    const UNetDownBlock& block = down[i];
    for (std::size_t j = 0; j < block.resnets.size(); ++j) {
      sample = block.resnets[j].forward(sample, emb);
      sdk::check_cancelled();  // a cancelled job stops within one block (sdk/job_scope.hpp)
      if (!block.attentions.empty()) sample = block.attentions[j].forward(sample, context);
      sdk::check_cancelled();
      skips.push_back(sample);
    }
    if (block.has_downsampler) {
      sample = block.downsampler.forward(sample);
      skips.push_back(sample);
    }
    sdk::report_detail("down_blocks", static_cast<int>(i) + 1, static_cast<int>(down.size()));
    if (trace) trace(idx("down_blocks", i), sample);
  }
  return skips;
}

at::Tensor UNetEncoder::forward_mid(const at::Tensor& sample_in, const at::Tensor& emb,
                                    const at::Tensor& context, const TraceFn& trace) const {
  at::Tensor sample = mid_resnet_0.forward(sample_in, emb);
  sdk::check_cancelled();
  sample = mid_attention.forward(sample, context);
  sdk::check_cancelled();
  sample = mid_resnet_1.forward(sample, emb);
  sdk::check_cancelled();
  sdk::report_detail("mid_block", 1, 1);
  if (trace) trace("mid_block", sample);
  return sample;
}

}  // namespace sdxlhost::nn
