// RRDBNet (ESRGAN / Real-ESRGAN generator), configuration detected from the weights.
#include "rrdbnet.hpp"

#include <ATen/ATen.h>

#include <sstream>

namespace sdxlhost::upscaler {
namespace {

constexpr double kSlope = 0.2;     // LeakyReLU slope everywhere in the network
constexpr double kResidual = 0.2;  // residual scaling of dense blocks and RRDBs

at::Tensor lrelu(const at::Tensor& x) { return at::leaky_relu(x, kSlope); }

std::string block_key(std::int64_t block, int rdb, int conv) {
  return "body." + std::to_string(block) + ".rdb" + std::to_string(rdb) + ".conv" + std::to_string(conv);
}

}  // namespace

RRDBNetConfig RRDBNet::detect(WeightReader& reader, const nn::TensorMap& weights) {
  RRDBNetConfig c;
  const at::Tensor* first = weights.find("conv_first.weight");
  const at::Tensor* last = weights.find("conv_last.weight");
  const at::Tensor* grow = weights.find(block_key(0, 1, 1) + ".weight");
  if (!first || !last || !grow || first->dim() != 4 || last->dim() != 4 || grow->dim() != 4)
    reader.fail("not an RRDBNet: conv_first, body.0.rdb1.conv1 and conv_last (4-D) are required");
  c.num_feat = first->size(0);
  c.num_out_ch = last->size(0);
  c.num_grow_ch = grow->size(0);
  c.num_in_ch = c.num_out_ch;  // every release maps RGB to RGB; the unshuffle factor follows
  const std::int64_t in = first->size(1);
  if (in == c.num_in_ch) c.unshuffle = 1;
  else if (in == c.num_in_ch * 4) c.unshuffle = 2;
  else if (in == c.num_in_ch * 16) c.unshuffle = 4;
  else reader.fail("conv_first takes " + std::to_string(in) + " channels: not " + std::to_string(c.num_in_ch) +
                   " x 1, 4 or 16 (pixel-unshuffle 1, 2, 4)");
  c.num_block = 0;
  while (reader.has(block_key(c.num_block, 1, 1) + ".weight")) ++c.num_block;
  c.upsample_steps = 0;
  while (reader.has("conv_up" + std::to_string(c.upsample_steps + 1) + ".weight")) ++c.upsample_steps;
  const int factor = 1 << c.upsample_steps;
  if (factor < c.unshuffle || factor % c.unshuffle != 0)
    reader.fail(std::to_string(c.upsample_steps) + " upsampling steps after pixel-unshuffle " +
                std::to_string(c.unshuffle) + " give no integer scale");
  c.scale = factor / c.unshuffle;
  return c;
}

RRDBNet::RRDBNet(const nn::TensorMap& weights, const std::string& source) {
  WeightReader reader(weights, source);
  config_ = detect(reader, weights);
  const auto& c = config_;
  conv_first_ = reader.conv("conv_first", c.num_in_ch * c.unshuffle * c.unshuffle, c.num_feat);
  body_.resize(static_cast<std::size_t>(c.num_block));
  for (std::int64_t b = 0; b < c.num_block; ++b)
    for (int r = 0; r < 3; ++r)
      for (int k = 0; k < 5; ++k) {
        const std::int64_t in = c.num_feat + k * c.num_grow_ch;
        const std::int64_t out = k == 4 ? c.num_feat : c.num_grow_ch;
        body_[static_cast<std::size_t>(b)].rdb[r].conv[k] = reader.conv(block_key(b, r + 1, k + 1), in, out);
      }
  conv_body_ = reader.conv("conv_body", c.num_feat, c.num_feat);
  for (int u = 1; u <= c.upsample_steps; ++u) conv_up_.push_back(reader.conv("conv_up" + std::to_string(u), c.num_feat, c.num_feat));
  conv_hr_ = reader.conv("conv_hr", c.num_feat, c.num_feat);
  conv_last_ = reader.conv("conv_last", c.num_feat, c.num_out_ch);
  reader.check_all_used();
}

std::string RRDBNet::describe() const {
  std::ostringstream out;
  out << "RRDBNet x" << config_.scale << " (num_feat " << config_.num_feat << ", num_block " << config_.num_block
      << ", num_grow_ch " << config_.num_grow_ch << ", pixel_unshuffle " << config_.unshuffle << ")";
  return out.str();
}

std::uint64_t RRDBNet::bytes() const {
  std::uint64_t total = conv_bytes(conv_first_) + conv_bytes(conv_body_) + conv_bytes(conv_hr_) + conv_bytes(conv_last_);
  for (const auto& conv : conv_up_) total += conv_bytes(conv);
  for (const auto& block : body_)
    for (const auto& rdb : block.rdb)
      for (const auto& conv : rdb.conv) total += conv_bytes(conv);
  return total;
}

void RRDBNet::convert(at::ScalarType dtype, bool channels_last) {
  for (Conv3x3* conv : {&conv_first_, &conv_body_, &conv_hr_, &conv_last_}) convert_conv(*conv, dtype, channels_last);
  for (auto& conv : conv_up_) convert_conv(conv, dtype, channels_last);
  for (auto& block : body_)
    for (auto& rdb : block.rdb)
      for (auto& conv : rdb.conv) convert_conv(conv, dtype, channels_last);
}

at::Tensor RRDBNet::dense_block(const DenseBlock& block, const at::Tensor& x) const {
  // Each conv sees the input and every earlier output, concatenated on channels.
  std::vector<at::Tensor> features{x};
  for (int k = 0; k < 4; ++k) features.push_back(lrelu(block.conv[k](at::cat(features, 1))));
  return block.conv[4](at::cat(features, 1)) * kResidual + x;
}

at::Tensor RRDBNet::forward(const at::Tensor& x, const CheckCancel& check, Trace* trace) const {
  auto record = [trace](const std::string& name, const at::Tensor& t) {
    if (trace) (*trace)[name] = t;
  };
  at::Tensor input = x;
  if (config_.unshuffle > 1) {
    input = at::pixel_unshuffle(x, config_.unshuffle);
    record("pixel_unshuffle", input);
  }
  const at::Tensor feat = conv_first_(input);
  record("conv_first", feat);
  at::Tensor body = feat;
  for (const auto& block : body_) {
    if (check) check();
    at::Tensor out = body;
    for (const auto& rdb : block.rdb) out = dense_block(rdb, out);
    body = out * kResidual + body;
  }
  record("body", body);
  at::Tensor up = feat + conv_body_(body);
  record("trunk_sum", up);
  for (std::size_t u = 0; u < conv_up_.size(); ++u) {
    if (check) check();
    up = lrelu(conv_up_[u](at::upsample_nearest2d(up, {up.size(2) * 2, up.size(3) * 2})));
    record("up" + std::to_string(u + 1), up);
  }
  const at::Tensor hr = lrelu(conv_hr_(up));
  record("hr", hr);
  return conv_last_(hr);
}

}  // namespace sdxlhost::upscaler
