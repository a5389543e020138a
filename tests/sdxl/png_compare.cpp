// png_compare A.png B.png [max_diff]: exits 0 when both decode to RGB images of the same size whose
// channels differ by at most max_diff (default 1) levels; prints the largest difference.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>

#include "sdxlhost/nn/image_decode.hpp"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: png_compare A.png B.png [max_diff]\n");
    return 2;
  }
  try {
    auto read = [](const char* path) {
      std::ifstream in(path, std::ios::binary);
      if (!in) throw std::runtime_error(std::string("cannot read ") + path);
      return sdxlhost::nn::decode_image_rgb(
          std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>()), path);
    };
    const auto a = read(argv[1]);
    const auto b = read(argv[2]);
    const int limit = argc > 3 ? std::atoi(argv[3]) : 1;
    if (a.width != b.width || a.height != b.height) {
      std::printf("sizes differ: %dx%d vs %dx%d\n", a.width, a.height, b.width, b.height);
      return 1;
    }
    int worst = 0;
    for (std::size_t i = 0; i < a.pixels.size(); ++i) worst = std::max(worst, std::abs(a.pixels[i] - b.pixels[i]));
    std::printf("max channel difference: %d (limit %d)\n", worst, limit);
    return worst <= limit ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "png_compare: %s\n", e.what());
    return 2;
  }
}
