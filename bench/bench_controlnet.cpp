// bench_controlnet: per-step time of an SDXL-width UNet with and without a ControlNet (random
// weights: the UNet of tools/'s sdxl_width_spec, a ControlNet made from its encoder as
// diffusers' ControlNetModel.from_unet does, plus SDXL's conditioning embedding and zero convs),
// run through the controlnet plugin's real denoise hook, printed as a table. Shows that a step
// where the unit is not kept (control_guidance_start/end) costs what a plain UNet step costs.
// Not a test. See docs/controlnet.md.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "controlnet_hook.hpp"
#include "prepared_control.hpp"
#include "sdxlhost/nn/controlnet.hpp"
#include "sdxlhost/nn/unet.hpp"
#include "sdxlhost/sdk/context.hpp"
#include "sdxlhost/sdk/request.hpp"
#include "tiny_sdxl_model.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using namespace sdxlhost;

struct Options {
  int repeats = 3;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::int64_t pixels = 256;
};

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

/// Medians of `repeats` rounds that each time every measure once, in turn, after one warm-up
/// round: interleaving keeps a busy shared machine from favouring whichever measure ran first.
std::vector<double> interleaved_medians(int repeats, const std::vector<std::function<void()>>& measures) {
  for (const auto& fn : measures) fn();
  std::vector<std::vector<double>> times(measures.size());
  for (int r = 0; r < repeats; ++r) {
    for (std::size_t m = 0; m < measures.size(); ++m) {
      const auto start = Clock::now();
      measures[m]();
      times[m].push_back(seconds_since(start));
    }
  }
  std::vector<double> medians;
  for (auto& t : times) {
    std::sort(t.begin(), t.end());
    medians.push_back(t[t.size() / 2]);
  }
  return medians;
}

void conv(nn::TensorMap& w, const std::string& name, std::int64_t out, std::int64_t in, std::int64_t k) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(in * k * k));
  w.set(name + ".weight", at::empty({out, in, k, k}).uniform_(-bound, bound));
  w.set(name + ".bias", at::empty({out}).uniform_(-bound, bound));
}

/// A ControlNet for `unet`: its encoder's weights (as from_unet copies them) plus the
/// conditioning embedding (16, 32, 96, 256) and one zero conv per skip and for the mid block
/// (random here, so the residuals are not zero).
nn::TensorMap controlnet_weights(const nn::TensorMap& unet, const nn::UNetConfig& c) {
  nn::TensorMap w;
  for (const char* prefix : {"conv_in.", "time_embedding.", "add_embedding.", "down_blocks.", "mid_block."})
    for (const auto& [name, tensor] : unet.with_prefix(prefix, false)) w.set(name, tensor);
  const std::vector<std::int64_t> ch = {16, 32, 96, 256};
  conv(w, "controlnet_cond_embedding.conv_in", ch[0], 3, 3);
  for (std::size_t i = 0; i + 1 < ch.size(); ++i) {
    conv(w, "controlnet_cond_embedding.blocks." + std::to_string(2 * i), ch[i], ch[i], 3);
    conv(w, "controlnet_cond_embedding.blocks." + std::to_string(2 * i + 1), ch[i + 1], ch[i], 3);
  }
  conv(w, "controlnet_cond_embedding.conv_out", c.block_out_channels[0], ch.back(), 3);
  std::vector<std::int64_t> skips = {c.block_out_channels[0]};
  for (std::size_t l = 0; l < c.levels(); ++l) {
    for (std::int64_t r = 0; r < c.layers_per_block; ++r) skips.push_back(c.block_out_channels[l]);
    if (l + 1 < c.levels()) skips.push_back(c.block_out_channels[l]);
  }
  for (std::size_t k = 0; k < skips.size(); ++k)
    conv(w, "controlnet_down_blocks." + std::to_string(k), skips[k], skips[k], 1);
  conv(w, "controlnet_mid_block", c.block_out_channels.back(), c.block_out_channels.back(), 1);
  return w;
}

struct Row {
  std::string what;
  double seconds;
};

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--repeats" && i + 1 < argc) o.repeats = std::max(1, std::stoi(argv[++i]));
    else if (arg == "--threads" && i + 1 < argc) o.threads = std::max(1, std::stoi(argv[++i]));
    else if (arg == "--pixels" && i + 1 < argc) o.pixels = std::stoll(argv[++i]);
    else {
      std::cerr << "usage: bench_controlnet [--repeats N] [--threads N] [--pixels 256]\n";
      return 2;
    }
  }
  try {
    at::set_num_threads(o.threads);
    at::NoGradGuard no_grad;
    const tools::SdxlSpec spec = tools::sdxl_width_spec();
    const tools::SdxlWeights weights = tools::make_weights(spec, 0, at::kFloat);
    const auto unet = nn::UNet2DConditionModel::load(spec.unet, weights.unet);
    nn::ControlNetConfig cn_config;
    cn_config.unet = spec.unet;
    const auto controlnet = nn::ControlNetModel::load(cn_config, controlnet_weights(weights.unet, spec.unet));

    const std::int64_t latent = o.pixels / 8, pooled = spec.unet.projection_class_embeddings_input_dim - 6 * spec.unet.addition_time_embed_dim;
    const at::Tensor sample = at::randn({2, 4, latent, latent});
    const at::Tensor context = at::randn({2, 77, spec.unet.cross_attention_dim});
    const at::Tensor text_embeds = at::randn({2, pooled});
    const float px = static_cast<float>(o.pixels);
    const at::Tensor time_ids = at::tensor({px, px, 0.f, 0.f, px, px}).repeat({2, 1});
    const at::Tensor t = at::tensor(500.f);

    // the plugin's hook over one job's Context, as the sdxl denoise loop calls it
    auto request = std::make_shared<sdk::GenerationRequest>();
    sdk::Context job(request, {});
    controlnet::PreparedControl prepared;
    controlnet::PreparedUnit unit;
    unit.model = controlnet;
    unit.control.width = unit.control.height = static_cast<int>(o.pixels);
    unit.control.pixels.assign(static_cast<std::size_t>(o.pixels * o.pixels * 3), 128);
    unit.guidance_end = 0.5;  // kept on the first half of the steps
    prepared.units.push_back(unit);
    job.set(controlnet::kPreparedSlot, prepared);
    const controlnet::ControlNetHook hook(std::make_shared<const controlnet::ControlNetSettings>());
    auto step = [&](int i, int total) {
      sdk::UNetResiduals residuals;
      hook.before_unet(job, {sample, t, context, text_embeds, time_ids, i, total}, residuals);
      unet->forward(sample, t, context, text_embeds, time_ids, residuals.down.empty() ? nullptr : &residuals);
    };
    const std::vector<std::string> names = {"UNet step, no ControlNet", "ControlNet forward alone",
                                            "UNet step + ControlNet (kept)", "UNet step + ControlNet (not kept)"};
    const at::Tensor cond = at::full({2, 3, o.pixels, o.pixels}, 0.5);
    const std::vector<double> medians = interleaved_medians(
        o.repeats, {[&] { unet->forward(sample, t, context, text_embeds, time_ids); },
                    [&] { controlnet->forward(sample, t, context, text_embeds, time_ids, cond, 1.0); },
                    [&] { step(0, 10); }, [&] { step(9, 10); }});
    std::vector<Row> rows;
    for (std::size_t m = 0; m < names.size(); ++m) rows.push_back({names[m], medians[m]});
    const int loop = 2 * o.repeats;
    const auto start = Clock::now();
    for (int i = 0; i < loop; ++i) step(i, loop);
    rows.push_back({"loop of " + std::to_string(loop) + " steps, end 0.5, per step", seconds_since(start) / loop});

    std::printf("bench_controlnet  libtorch %s  %d intra-op threads  fp32 CPU\n", TORCH_VERSION, at::get_num_threads());
    std::printf("SDXL-width UNet (320/640/1280, 1 transformer block per attention) + SDXL-shaped ControlNet,\n"
                "batch 2 (CFG), %lldx%lld px = %lld^2 latents; median of %d interleaved rounds after a warm-up\n",
                static_cast<long long>(o.pixels), static_cast<long long>(o.pixels), static_cast<long long>(latent),
                o.repeats);
    std::printf("| %-38s | %10s | %8s |\n", "measure", "seconds", "x UNet");
    std::printf("|----------------------------------------|------------|----------|\n");
    for (const Row& r : rows)
      std::printf("| %-38s | %10.4f | %8.2f |\n", r.what.c_str(), r.seconds, r.seconds / rows[0].seconds);
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "bench_controlnet: " << e.what() << "\n";
    return 1;
  }
}
