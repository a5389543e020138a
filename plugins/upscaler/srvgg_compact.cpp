// SRVGGNetCompact (Real-ESRGAN compact models), configuration detected from the weights.
#include "srvgg_compact.hpp"

#include <ATen/ATen.h>

#include <cmath>
#include <sstream>

namespace sdxlhost::upscaler {
namespace {

std::string body(std::int64_t index) { return "body." + std::to_string(index); }

}  // namespace

bool SRVGGNetCompact::matches(const nn::TensorMap& weights) {
  const at::Tensor* first = weights.find("body.0.weight");
  const at::Tensor* act = weights.find("body.1.weight");
  return first && act && first->dim() == 4 && act->dim() == 1;
}

SRVGGNetCompact::SRVGGNetCompact(const nn::TensorMap& weights, const std::string& source) {
  WeightReader reader(weights, source);
  if (!matches(weights)) reader.fail("not an SRVGGNetCompact: body.0 (conv) and body.1 (PReLU) are required");
  std::int64_t last = 0;
  while (reader.has(body(last + 2) + ".weight")) last += 2;
  if (last < 2) reader.fail("SRVGGNetCompact needs at least a first and a last conv");
  auto& c = config_;
  const at::Tensor& first = weights.at("body.0.weight");
  c.num_in_ch = first.size(1);
  c.num_out_ch = c.num_in_ch;  // every release maps RGB to RGB
  c.num_feat = first.size(0);
  c.num_conv = (last - 2) / 2;
  for (std::int64_t i = 0; i < last; i += 2) {
    convs_.push_back(reader.conv(body(i), i == 0 ? c.num_in_ch : c.num_feat, c.num_feat));
    at::Tensor prelu = reader.take(body(i + 1) + ".weight");
    if (prelu.dim() != 1 || prelu.size(0) != c.num_feat)
      reader.fail("'" + body(i + 1) + ".weight' is not a PReLU of " + std::to_string(c.num_feat) + " channels");
    prelus_.push_back(prelu);
  }
  Conv3x3 tail = reader.conv(body(last), c.num_feat);
  const std::int64_t square = tail.out_channels() / c.num_out_ch;
  c.scale = static_cast<int>(std::lround(std::sqrt(static_cast<double>(square))));
  if (c.scale < 1 || square * c.num_out_ch != tail.out_channels() || static_cast<std::int64_t>(c.scale) * c.scale != square)
    reader.fail("the last conv has " + std::to_string(tail.out_channels()) + " outputs: not " +
                std::to_string(c.num_out_ch) + " x scale^2");
  convs_.push_back(tail);
  reader.check_all_used();
}

std::string SRVGGNetCompact::describe() const {
  std::ostringstream out;
  out << "SRVGGNetCompact x" << config_.scale << " (num_feat " << config_.num_feat << ", num_conv " << config_.num_conv
      << ", PReLU)";
  return out.str();
}

std::uint64_t SRVGGNetCompact::bytes() const {
  std::uint64_t total = 0;
  for (const auto& conv : convs_) total += conv_bytes(conv);
  for (const auto& prelu : prelus_) total += static_cast<std::uint64_t>(prelu.nbytes());
  return total;
}

void SRVGGNetCompact::convert(at::ScalarType dtype, bool channels_last) {
  for (auto& conv : convs_) convert_conv(conv, dtype, channels_last);
  for (auto& prelu : prelus_) prelu = prelu.to(dtype);
}

at::Tensor SRVGGNetCompact::forward(const at::Tensor& x, const CheckCancel& check, Trace* trace) const {
  at::Tensor out = x;
  for (std::size_t i = 0; i < prelus_.size(); ++i) {
    if (check && i % 8 == 7) check();
    out = at::prelu(convs_[i](out), prelus_[i]);
  }
  out = convs_.back()(out);
  if (trace) (*trace)["body"] = out;
  const at::Tensor base = at::upsample_nearest2d(x, {x.size(2) * config_.scale, x.size(3) * config_.scale});
  return at::pixel_shuffle(out, config_.scale) + base;
}

}  // namespace sdxlhost::upscaler
