#pragma once
/// @file test_pattern.hpp
/// The pixels the test-only plugin `test_generate` draws, so tests can check which seed an image
/// was made from (image i of a batch uses seed + i).

#include <cstdint>

namespace sdxlhost::test_plugins {

/// Value of channel `c` of pixel (`x`, `y`) of the image drawn for `seed` (a 64-bit mix, so
/// different seeds give visibly different images).
inline std::uint8_t test_pixel(std::int64_t seed, int x, int y, int c) {
  std::uint64_t v = static_cast<std::uint64_t>(seed) * 0x9E3779B97F4A7C15ull;
  v ^= (static_cast<std::uint64_t>(x) << 1) * 0xBF58476D1CE4E5B9ull;
  v ^= (static_cast<std::uint64_t>(y) << 17) * 0x94D049BB133111EBull;
  v ^= static_cast<std::uint64_t>(c + 1) * 0x2545F4914F6CDD1Dull;
  v ^= v >> 31;
  v *= 0xD6E8FEB86659FD93ull;
  v ^= v >> 32;
  return static_cast<std::uint8_t>(v & 0xFF);
}

}  // namespace sdxlhost::test_plugins
