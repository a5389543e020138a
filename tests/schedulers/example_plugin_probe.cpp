// example_plugin_probe <plugin.so>: loads a scheduler plugin through the plugin boundary (ABI
// check, create_plugin, initialize into Registries) and checks the example scheduler is usable
// by class name and alias, runs a loop, and refuses a bad option. Exit 0 = all good.
#include <ATen/ATen.h>

#include <cmath>
#include <iostream>

#include "common/plugin_loader.hpp"
#include "sdxlhost/nn/scheduler_defaults.hpp"
#include "sdxlhost/sdk/error.hpp"

namespace {

class ZeroNoise final : public sdxlhost::sdk::NoiseSource {
 public:
  at::Tensor randn(at::IntArrayRef shape) override { return at::zeros(shape); }
};

int fail(const std::string& message) {
  std::cerr << "example_plugin_probe: " << message << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return fail("usage: example_plugin_probe <plugin.so>");
  try {
    sdxlhost::test_support::LoadedPlugin loaded(argv[1]);
    const auto& registries = loaded.registries();
    if (loaded.info().name != "example_scheduler") return fail("unexpected plugin name");
    if (registries.scheduler_names() != std::vector<std::string>{"ExampleEulerScheduler"})
      return fail("ExampleEulerScheduler is not registered");
    auto scheduler = registries.create_scheduler("example euler", sdxlhost::nn::sdxl_scheduler_config(), {});
    if (scheduler->class_name() != "ExampleEulerScheduler") return fail("alias resolves to the wrong class");
    scheduler->set_timesteps(10);
    at::Tensor x = at::ones({1, 4, 8, 8}) * scheduler->init_noise_sigma();
    ZeroNoise noise;
    const at::Tensor ts = scheduler->timesteps();
    for (int64_t k = 0; k < ts.numel(); ++k)
      x = scheduler->step(scheduler->scale_model_input(x, ts[k]) * 0.1, ts[k], x, noise);
    if (!at::isfinite(x).all().item<bool>()) return fail("non-finite result");
    try {
      registries.create_scheduler("ExampleEulerScheduler", {}, {{"prediction_type", "v_prediction"}});
      return fail("a bad option was accepted");
    } catch (const sdxlhost::sdk::Error& e) {
      if (e.field() != "data.scheduler_options.prediction_type") return fail("wrong error field: " + e.field());
    }
    std::cout << "example plugin OK: " << ts.numel() << " steps, final mean " << x.mean().item<double>() << "\n";
    return 0;
  } catch (const std::exception& e) {
    return fail(e.what());
  }
}
