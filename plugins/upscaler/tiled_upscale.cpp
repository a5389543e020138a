// Tiled upscaling with cross-faded overlaps, accumulated one row of tiles at a time.
#include "tiled_upscale.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstring>

#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::upscaler {
namespace {

/// Rounds tile and overlap down to the network's input multiple (tiles then start and end on it).
TileSettings aligned(TileSettings tiles, int multiple) {
  tiles.tile_size -= tiles.tile_size % multiple;
  tiles.tile_overlap -= tiles.tile_overlap % multiple;
  if (tiles.tile_size > 0 && tiles.tile_size < multiple) tiles.tile_size = multiple;
  // The core must stay longer than two overlaps, so no pixel is in three tiles.
  if (tiles.tile_size > 0) tiles.tile_overlap = std::min(tiles.tile_overlap, (tiles.tile_size - 1) / 4 / multiple * multiple);
  return tiles;
}

/// The part of a tile that is kept: tile_size less `overlap` of context on each side.
int core_size(const TileSettings& tiles) {
  return tiles.tile_size == 0 ? 0 : std::max(1, tiles.tile_size - 2 * tiles.tile_overlap);
}

/// `span` widened by `context` on each side, within [0, length).
TileSpan with_context(const TileSpan& span, int context, int length) {
  const int start = std::max(0, span.start - context);
  return {start, std::min(length, span.start + span.size + context) - start};
}

int round_up(int value, int multiple) { return (value + multiple - 1) / multiple * multiple; }

/// (1,3,H,W) float in [0,1] from 8-bit pixels; gray expanded to RGB, alpha dropped.
at::Tensor to_float_rgb(const sdk::Image& image) {
  if (image.channels != 1 && image.channels != 3 && image.channels != 4)
    throw sdk::Error(sdk::ErrorCode::ValidationError, "an image with " + std::to_string(image.channels) +
                                                          " channels cannot be upscaled (1, 3 or 4)");
  at::Tensor hwc = at::from_blob(const_cast<std::uint8_t*>(image.pixels.data()),
                                 {image.height, image.width, image.channels}, at::kByte);
  at::Tensor rgb = image.channels == 1 ? hwc.expand({image.height, image.width, 3})
                                       : hwc.narrow(2, 0, 3);
  return rgb.permute({2, 0, 1}).unsqueeze(0).to(at::kFloat).div_(255.0).contiguous();
}

/// Pads bottom/right to multiples of `multiple` (reflection where the side allows, else edge).
at::Tensor pad_to_multiple(const at::Tensor& x, int multiple) {
  const int h = static_cast<int>(x.size(2)), w = static_cast<int>(x.size(3));
  const int pad_h = round_up(h, multiple) - h, pad_w = round_up(w, multiple) - w;
  if (pad_h == 0 && pad_w == 0) return x;
  if (pad_h < h && pad_w < w) return at::reflection_pad2d(x, {0, pad_w, 0, pad_h});
  return at::replication_pad2d(x, {0, pad_w, 0, pad_h});
}

/// Weights along one axis of a tile's output: ramps over the overlaps shared with neighbours.
at::Tensor axis_weights(const std::vector<TileSpan>& spans, std::size_t index, int overlap, int scale) {
  const std::int64_t length = static_cast<std::int64_t>(spans[index].size) * scale;
  at::Tensor w = at::ones({length}, at::kFloat);
  const std::int64_t ramp = static_cast<std::int64_t>(overlap) * scale;
  if (ramp == 0 || spans.size() == 1) return w;
  // (j + 0.5) / ramp rising and 1 - (j + 0.5) / ramp falling sum to exactly 1 on the shared pixels.
  const at::Tensor rising = (at::arange(ramp, at::kFloat) + 0.5) / static_cast<double>(ramp);
  if (index > 0) w.narrow(0, 0, ramp).copy_(rising);
  if (index + 1 < spans.size()) w.narrow(0, length - ramp, ramp).copy_(1.0 - rising);
  return w;
}

/// Writes rows [0, rows) of a (3, h, w) float band into `out` at output row `top`, 8-bit.
void store_rows(const at::Tensor& band, std::int64_t rows, int top, sdk::Image& out) {
  const std::int64_t keep = std::min<std::int64_t>(rows, out.height - top);
  if (keep <= 0) return;
  at::Tensor u8 = band.narrow(1, 0, keep).narrow(2, 0, out.width).clamp(0.0, 1.0).mul(255.0).round()
                      .to(at::kByte).permute({1, 2, 0}).contiguous();
  std::memcpy(out.pixels.data() + static_cast<std::size_t>(top) * out.width * 3, u8.data_ptr(),
              static_cast<std::size_t>(u8.numel()));
}

}  // namespace

std::vector<TileSpan> tile_spans(int length, int tile, int overlap) {
  if (tile <= 0 || tile >= length) return {{0, length}};
  const int step = tile - overlap;
  std::vector<TileSpan> spans;
  for (int start = 0;; start += step) {
    spans.push_back({start, std::min(tile, length - start)});
    if (start + tile >= length) break;
  }
  return spans;
}

int tile_count(int width, int height, NetworkShape shape, TileSettings tiles) {
  tiles = aligned(tiles, shape.multiple);
  const int w = round_up(width, shape.multiple), h = round_up(height, shape.multiple);
  return static_cast<int>(tile_spans(w, core_size(tiles), tiles.tile_overlap).size() *
                          tile_spans(h, core_size(tiles), tiles.tile_overlap).size());
}

sdk::Image tiled_upscale(const sdk::Image& image, const TileNetwork& network, NetworkShape shape,
                         TileSettings tiles, const TileProgress& progress, const std::function<void()>& check) {
  tiles = aligned(tiles, shape.multiple);
  const int s = shape.scale;
  const at::Tensor input = pad_to_multiple(to_float_rgb(image), shape.multiple);
  const int height = static_cast<int>(input.size(2)), width = static_cast<int>(input.size(3));
  const auto rows = tile_spans(height, core_size(tiles), tiles.tile_overlap);
  const auto cols = tile_spans(width, core_size(tiles), tiles.tile_overlap);
  const int total = static_cast<int>(rows.size() * cols.size());

  sdk::Image out;
  out.width = image.width * s;
  out.height = image.height * s;
  out.channels = 3;
  out.metadata = image.metadata;
  out.pixels.resize(static_cast<std::size_t>(out.width) * out.height * 3);

  at::Tensor carry;  // the bottom overlap of the previous band, already weighted
  int done = 0;
  for (std::size_t r = 0; r < rows.size(); ++r) {
    const std::int64_t band_h = static_cast<std::int64_t>(rows[r].size) * s;
    at::Tensor band = at::zeros({3, band_h, static_cast<std::int64_t>(width) * s}, at::kFloat);
    if (carry.defined()) band.narrow(1, 0, carry.size(1)).add_(carry);
    const at::Tensor wy = axis_weights(rows, r, tiles.tile_overlap, s).unsqueeze(1);
    for (std::size_t c = 0; c < cols.size(); ++c) {
      if (check) check();
      // The network sees the tile plus up to `overlap` pixels of context on each side, so the
      // border effects of its zero padding fall outside the part that is kept.
      const TileSpan y = with_context(rows[r], tiles.tile_overlap, height);
      const TileSpan x = with_context(cols[c], tiles.tile_overlap, width);
      const at::Tensor result = network(input.narrow(2, y.start, y.size).narrow(3, x.start, x.size));
      if (result.dim() != 4 || result.size(2) != static_cast<std::int64_t>(y.size) * s ||
          result.size(3) != static_cast<std::int64_t>(x.size) * s)
        throw sdk::Error(sdk::ErrorCode::InternalError, "the upscaler returned a tile of the wrong size");
      const std::int64_t tile_w = static_cast<std::int64_t>(cols[c].size) * s;
      const at::Tensor kept = result[0].to(at::kFloat)
                                  .narrow(1, static_cast<std::int64_t>(rows[r].start - y.start) * s, band_h)
                                  .narrow(2, static_cast<std::int64_t>(cols[c].start - x.start) * s, tile_w);
      const at::Tensor wx = axis_weights(cols, c, tiles.tile_overlap, s).unsqueeze(0);
      band.narrow(2, static_cast<std::int64_t>(cols[c].start) * s, tile_w).add_(kept * (wy * wx));
      if (progress) progress(++done, total);
    }
    // Rows no later tile touches are final; the overlap with the next band is carried over.
    const std::int64_t final_rows = r + 1 < rows.size() ? static_cast<std::int64_t>(rows[r + 1].start - rows[r].start) * s : band_h;
    carry = r + 1 < rows.size() ? band.narrow(1, final_rows, band_h - final_rows).clone() : at::Tensor();
    store_rows(band, final_rows, rows[r].start * s, out);
  }
  return out;
}

}  // namespace sdxlhost::upscaler
