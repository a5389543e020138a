#pragma once
/// @file tiled_upscale.hpp
/// Running an upscaling network over an image in tiles, so that memory follows the tile and not
/// the image. The network sees at most tile_size x tile_size input pixels: a core of
/// tile_size - 2 * tile_overlap plus `tile_overlap` pixels of context on each side (cropped from
/// its output, so the border effects of its zero padding are not kept). Neighbouring cores
/// overlap by `tile_overlap`; there the two outputs are cross-faded with linear weights that sum
/// to exactly 1 (a partition of unity), so a network that is exact per pixel gives the untiled
/// result bit for bit and a real network shows no seams. Rows of tiles are accumulated in one float band (3 x tile rows x output width)
/// that is converted to 8 bits as soon as no later tile touches it: besides the 8-bit result,
/// working memory is one band plus the network's activations for one tile (docs/upscaler.md).
/// Thread-safety: pure functions; `network` is called on the calling thread.

#include <ATen/core/Tensor.h>

#include <functional>
#include <vector>

#include "sdxlhost/sdk/image.hpp"

namespace sdxlhost::upscaler {

/// How to cut the input. Sizes are in input pixels.
struct TileSettings {
  int tile_size = 256;    ///< largest side the network is given; 0 = the whole image in one piece
  int tile_overlap = 16;  ///< context on each side of a tile and cross-fade width; < tile_size / 4
};

/// One tile along an axis: [start, start + size) in input pixels.
struct TileSpan {
  int start = 0;
  int size = 0;
};

/// The tiles along an axis of `length` pixels: starts at multiples of (tile - overlap), the last
/// one shorter, every pair of neighbours sharing exactly `overlap` pixels. `tile` 0 or >= length
/// gives one span. Precondition: 2 * overlap < tile.
std::vector<TileSpan> tile_spans(int length, int tile, int overlap);

/// The network as the tiler sees it: (1,3,h,w) float32 in [0,1] -> (1,3,h*scale,w*scale) float32.
using TileNetwork = std::function<at::Tensor(const at::Tensor&)>;
/// Called after each tile with (tiles done, tiles in total).
using TileProgress = std::function<void(int done, int total)>;

/// What the tiler needs to know about the network.
struct NetworkShape {
  int scale = 4;     ///< output side / input side
  int multiple = 1;  ///< input sides must be multiples of this (pixel-unshuffle)
};

/// Upscales an 8-bit image (1, 3 or 4 channels; gray is expanded, alpha dropped) to 8-bit RGB of
/// scale x the size: round(clamp(network output, 0, 1) * 255). Sides that are not a multiple of
/// `shape.multiple` are padded by reflection and the result cropped. `check` runs before every
/// tile (cancel / timeout). Throws what `network` and `check` throw.
sdk::Image tiled_upscale(const sdk::Image& image, const TileNetwork& network, NetworkShape shape,
                         TileSettings tiles, const TileProgress& progress = {},
                         const std::function<void()>& check = {});

/// Tiles tiled_upscale will run for an image of this size (for progress totals).
int tile_count(int width, int height, NetworkShape shape, TileSettings tiles);

}  // namespace sdxlhost::upscaler
