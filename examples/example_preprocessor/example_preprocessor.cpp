// example_preprocessor: a complete third-party control-image preprocessor plugin for sdxl-host.
//
// It adds "example_threshold": each pixel's luma (ITU-R BT.601, integer weights) against a
// threshold gives a black-and-white map (optionally inverted), returned as RGB, the form
// ControlNets take. It shows every piece a preprocessor plugin needs: the sdk::Preprocessor
// interface, options declared with type, default and range (the host checks a request's options
// against them and lists them in `capabilities`), registration, and the SDXLHOST_PLUGIN entry
// points. It needs only the SDK: no OpenCV, no libtorch calls.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "sdxlhost/sdk/plugin.hpp"
#include "sdxlhost/sdk/preprocessor.hpp"
#include "sdxlhost/sdk/registries.hpp"

namespace example {

using sdxlhost::sdk::Image;
using sdxlhost::sdk::PreprocessorOption;

/// Black and white by luma. Stateless, so concurrent jobs may share it.
class ThresholdPreprocessor final : public sdxlhost::sdk::Preprocessor {
 public:
  std::string name() const override { return "example_threshold"; }

  std::string description() const override {
    return "example plugin: white where the luma is at least `threshold`, black elsewhere (RGB)";
  }

  // The host fills absent options with these defaults and refuses values of another type or out
  // of range, naming the field, before run() is called.
  std::vector<PreprocessorOption> options() const override {
    return {{"threshold", "integer", 128, 0.0, 255.0, {}, "luma at and above which a pixel is white"},
            {"invert", "boolean", false, std::nullopt, std::nullopt, {}, "swap black and white"}};
  }

  // `input` is 8-bit RGB (1 or 4 channels are possible from other callers: handled too).
  Image run(const Image& input, const nlohmann::json& options) const override {
    const int threshold = options.at("threshold").get<int>();
    const bool invert = options.at("invert").get<bool>();
    Image out;
    out.width = input.width;
    out.height = input.height;
    out.channels = 3;
    const std::size_t pixels = static_cast<std::size_t>(input.width) * input.height;
    out.pixels.resize(pixels * 3);
    for (std::size_t p = 0; p < pixels; ++p) {
      const std::uint8_t* px = &input.pixels[p * input.channels];
      const int luma = input.channels >= 3 ? (299 * px[0] + 587 * px[1] + 114 * px[2]) / 1000 : px[0];
      const bool white = (luma >= threshold) != invert;
      for (int c = 0; c < 3; ++c) out.pixels[p * 3 + c] = white ? 255 : 0;
    }
    return out;
  }
};

/// The plugin: registers the preprocessor. Its feature name is "example_preprocessor".
class ExamplePreprocessorPlugin final : public sdxlhost::sdk::Plugin {
 public:
  sdxlhost::sdk::PluginInfo info() const override {
    return {"example_preprocessor", "1.0.0", "example third-party preprocessor (example_threshold)",
            {"example_threshold (preprocessor)"}, {}};
  }
  void initialize(const nlohmann::json& /*config*/, sdxlhost::sdk::Registries& registries) override {
    registries.add_preprocessor(std::make_shared<ThresholdPreprocessor>());
  }
};

}  // namespace example

SDXLHOST_PLUGIN(example::ExamplePreprocessorPlugin)
