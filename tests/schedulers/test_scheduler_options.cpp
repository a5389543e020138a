// The schedulers plugin's user-facing surface: registration, A1111/ComfyUI aliases, option
// validation (VALIDATION_ERROR naming data.scheduler_options.<key> and the allowed values),
// ignored unknown keys, the SDXL default config, the float32 training tables, and that every
// scheduler runs any step count on float32/float64/bfloat16 samples.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include "common/goldens.hpp"
#include "schedule_tables.hpp"
#include "common/plugin_loader.hpp"
#include "sdxlhost/nn/denoise_window.hpp"
#include "sdxlhost/nn/scheduler_defaults.hpp"
#include "sdxlhost/sdk/error.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace sdxlhost;

namespace {

const std::vector<std::string> kClasses = {
    "DDIMScheduler", "DPMSolverMultistepScheduler", "DPMSolverSinglestepScheduler", "EulerAncestralDiscreteScheduler",
    "EulerDiscreteScheduler", "HeunDiscreteScheduler", "KDPM2AncestralDiscreteScheduler", "KDPM2DiscreteScheduler",
    "LMSDiscreteScheduler", "UniPCMultistepScheduler"};

const test_support::LoadedPlugin& loaded() {
  static test_support::LoadedPlugin instance(test_support::built_plugin("schedulers"));
  return instance;
}

std::unique_ptr<sdk::Scheduler> create(const std::string& name, const json& overrides = json::object()) {
  return loaded().registries().create_scheduler(name, nn::sdxl_scheduler_config(), overrides);
}

/// Expects create() to throw a ValidationError on `field` whose message mentions `mention`.
void expect_option_error(const std::string& name, const json& overrides, const std::string& field,
                         const std::string& mention) {
  try {
    create(name, overrides);
    ADD_FAILURE() << name << " accepted " << overrides.dump();
  } catch (const sdk::Error& e) {
    EXPECT_EQ(e.code(), sdk::ErrorCode::ValidationError) << e.what();
    EXPECT_EQ(e.field(), field) << e.what();
    EXPECT_NE(std::string(e.what()).find(mention), std::string::npos) << e.what();
  }
}

/// Standard normal draws from a seeded CPU generator; counts the draws.
class SeededNoise final : public sdk::NoiseSource {
 public:
  at::Tensor randn(at::IntArrayRef shape) override {
    ++draws;
    return at::randn(shape, generator_, at::kFloat);
  }
  int draws = 0;

 private:
  at::Generator generator_ = at::detail::createCPUGenerator(42);
};

/// Runs the whole txt2img loop with a linear fake model; returns the final sample.
at::Tensor run_loop(sdk::Scheduler& s, int steps, at::ScalarType dtype, sdk::NoiseSource& noise) {
  s.set_timesteps(steps);
  at::Tensor sample = (at::randn({1, 4, 8, 8}, at::kFloat) * s.init_noise_sigma()).to(dtype);
  const at::Tensor ts = s.timesteps();
  for (int64_t k = 0; k < ts.numel(); ++k) {
    const at::Tensor input = s.scale_model_input(sample, ts[k]);
    const at::Tensor eps = input * 0.1 + 0.01;
    sample = s.step(eps, ts[k], sample, noise);
  }
  return sample;
}

}  // namespace

TEST(SchedulerPlugin, RegistersTheTenClassesUnderDiffusersNames) {
  EXPECT_EQ(loaded().registries().scheduler_names(), kClasses);
  const sdk::PluginInfo info = loaded().info();
  EXPECT_EQ(info.name, "schedulers");
  for (const auto& name : kClasses)
    EXPECT_NE(std::find(info.provides.begin(), info.provides.end(), name), info.provides.end()) << name;
  for (const auto& name : kClasses) EXPECT_EQ(create(name)->class_name(), name);
}

TEST(SchedulerPlugin, AliasesMapToTheCorrespondingClassAndOptions) {
  struct Expected {
    std::string cls;
    json overrides;
  };
  const json karras = {{"use_karras_sigmas", true}};
  const std::map<std::string, Expected> expected = {
      {"Euler", {"EulerDiscreteScheduler", json::object()}},
      {"Euler a", {"EulerAncestralDiscreteScheduler", json::object()}},
      {"DPM++ 2M", {"DPMSolverMultistepScheduler", json::object()}},
      {"DPM++ 2M Karras", {"DPMSolverMultistepScheduler", karras}},
      {"DPM++ 2M SDE", {"DPMSolverMultistepScheduler", {{"algorithm_type", "sde-dpmsolver++"}}}},
      {"DPM++ 2M SDE Karras", {"DPMSolverMultistepScheduler", {{"algorithm_type", "sde-dpmsolver++"}, {"use_karras_sigmas", true}}}},
      {"DPM2", {"KDPM2DiscreteScheduler", json::object()}},
      {"DPM2 Karras", {"KDPM2DiscreteScheduler", karras}},
      {"DPM2 a", {"KDPM2AncestralDiscreteScheduler", json::object()}},
      {"DPM2 a Karras", {"KDPM2AncestralDiscreteScheduler", karras}},
      {"Heun", {"HeunDiscreteScheduler", json::object()}},
      {"LMS", {"LMSDiscreteScheduler", json::object()}},
      {"LMS Karras", {"LMSDiscreteScheduler", karras}},
      {"DDIM", {"DDIMScheduler", json::object()}},
      {"UniPC", {"UniPCMultistepScheduler", json::object()}},
      {"dpmpp_2m_sde", {"DPMSolverMultistepScheduler", {{"algorithm_type", "sde-dpmsolver++"}}}},
      {"euler_ancestral", {"EulerAncestralDiscreteScheduler", json::object()}},
      {"uni_pc", {"UniPCMultistepScheduler", json::object()}},
  };
  for (const auto& [alias, want] : expected) {
    const sdk::SchedulerAlias got = loaded().registries().resolve_scheduler(alias);
    EXPECT_EQ(got.class_name, want.cls) << alias;
    EXPECT_EQ(got.overrides, want.overrides) << alias;
    auto s = create(alias);
    EXPECT_EQ(s->class_name(), want.cls) << alias;
    for (const auto& [key, value] : want.overrides.items()) EXPECT_EQ(s->config().at(key), value) << alias;
  }
  // Case-insensitive, and request options go on top of the alias' options.
  auto s = loaded().registries().create_scheduler("dpm++ 2m karras", nn::sdxl_scheduler_config(),
                                                  {{"solver_order", 3}});
  EXPECT_EQ(s->config().at("use_karras_sigmas"), true);
  EXPECT_EQ(s->config().at("solver_order"), 3);
  // No alias for samplers this plugin does not have (DPMSolverSDEScheduler, DPM++ 2S a).
  EXPECT_THROW(loaded().registries().resolve_scheduler("DPM++ SDE Karras"), sdk::Error);
  EXPECT_THROW(loaded().registries().resolve_scheduler("DPM++ 2S a"), sdk::Error);
}

TEST(SchedulerPlugin, UnknownSchedulerIsAValidationErrorListingWhatExists) {
  try {
    create("Euler b");
    FAIL() << "accepted an unknown scheduler";
  } catch (const sdk::Error& e) {
    EXPECT_EQ(e.code(), sdk::ErrorCode::ValidationError);
    EXPECT_EQ(e.field(), "data.scheduler");
    EXPECT_NE(std::string(e.what()).find("EulerDiscreteScheduler"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("\"dpm++ 2m karras\""), std::string::npos);
  }
}

TEST(SchedulerPlugin, BadOptionValuesNameTheOptionAndTheAllowedValues) {
  const std::string f = "data.scheduler_options.";
  expect_option_error("EulerDiscreteScheduler", {{"prediction_type", "x0"}}, f + "prediction_type", "'v_prediction'");
  expect_option_error("EulerAncestralDiscreteScheduler", {{"prediction_type", "sample"}}, f + "prediction_type", "'epsilon'");
  expect_option_error("DDIMScheduler", {{"timestep_spacing", "uniform"}}, f + "timestep_spacing", "'trailing'");
  expect_option_error("DPMSolverMultistepScheduler", {{"algorithm_type", "dpm3"}}, f + "algorithm_type", "'sde-dpmsolver++'");
  expect_option_error("DPMSolverMultistepScheduler", {{"solver_order", 4}}, f + "solver_order", "between 1 and 3");
  expect_option_error("DPMSolverMultistepScheduler", {{"algorithm_type", "dpmsolver"}}, f + "final_sigmas_type", "sigma_min");
  expect_option_error("HeunDiscreteScheduler", {{"beta_schedule", "cosine"}}, f + "beta_schedule", "'scaled_linear'");
  expect_option_error("LMSDiscreteScheduler", {{"use_karras_sigmas", "yes"}}, f + "use_karras_sigmas", "true or false");
  expect_option_error("UniPCMultistepScheduler", {{"final_sigmas_type", "one"}}, f + "final_sigmas_type", "'sigma_min'");
  expect_option_error("KDPM2DiscreteScheduler", {{"use_karras_sigmas", true}, {"use_beta_sigmas", true}},
                      f + "use_beta_sigmas", "only one of");
  expect_option_error("EulerDiscreteScheduler", {{"use_lu_lambdas", true}, {"interpolation_type", "cubic"}},
                      f + "interpolation_type", "'log_linear'");  // use_lu_lambdas: not a Euler key, ignored
  expect_option_error("DPMSolverMultistepScheduler", {{"use_flow_sigmas", true}}, f + "use_flow_sigmas", "not implemented");
  expect_option_error("DDIMScheduler", {{"eta", -1}}, f + "eta", "between");
  expect_option_error("EulerDiscreteScheduler", {{"steps_offset", 1.5}}, f + "steps_offset", "integer");
  expect_option_error("DPMSolverSinglestepScheduler", {{"algorithm_type", "sde-dpmsolver"}}, f + "algorithm_type", "'dpmsolver++'");
}

TEST(SchedulerPlugin, KeysAClassDoesNotKnowAreIgnoredAndDefaultsFillTheRest) {
  auto s = create("EulerDiscreteScheduler", {{"solver_order", 99}, {"no_such_key", "x"}});
  EXPECT_FALSE(s->config().contains("solver_order"));
  EXPECT_FALSE(s->config().contains("no_such_key"));
  EXPECT_EQ(s->config().at("timestep_spacing"), "leading");  // from SDXL's config
  EXPECT_EQ(s->config().at("final_sigmas_type"), "zero");    // class default
  // Without the SDXL config the class defaults apply (diffusers' __init__ signature).
  auto bare = loaded().registries().create_scheduler("EulerDiscreteScheduler", json::object(), json::object());
  EXPECT_EQ(bare->config().at("beta_schedule"), "linear");
  EXPECT_EQ(bare->config().at("timestep_spacing"), "linspace");
  // diffusers' remaps: deis -> dpmsolver++, a UniPC solver_type for DPM -> midpoint.
  auto dpm = create("DPMSolverMultistepScheduler", {{"algorithm_type", "deis"}, {"solver_type", "bh2"}});
  EXPECT_EQ(dpm->config().at("algorithm_type"), "dpmsolver++");
  EXPECT_EQ(dpm->config().at("solver_type"), "midpoint");
}

TEST(SchedulerDefaults, ModelConfigOrSdxlDefaults) {
  const json sdxl = nn::sdxl_scheduler_config();
  EXPECT_EQ(sdxl.at("beta_schedule"), "scaled_linear");
  EXPECT_EQ(sdxl.at("steps_offset"), 1);
  EXPECT_EQ(nn::model_scheduler_config(""), sdxl);
  const fs::path dir = fs::temp_directory_path() / ("sched_cfg_" + std::to_string(::getpid()));
  fs::create_directories(dir / "scheduler");
  EXPECT_EQ(nn::model_scheduler_config(dir), sdxl);  // folder without scheduler_config.json
  std::ofstream(dir / "scheduler" / "scheduler_config.json") << R"({"timestep_spacing": "trailing", "beta_end": 0.02})";
  EXPECT_EQ(nn::model_scheduler_config(dir).at("timestep_spacing"), "trailing");
  std::ofstream(dir / "scheduler" / "scheduler_config.json") << "not json";
  EXPECT_THROW(nn::model_scheduler_config(dir), sdk::Error);
  fs::remove_all(dir);
}

TEST(ScheduleTables, Float32BetasAndAlphasCumprodMatchDiffusersBitForBit) {
  const char* shared = std::getenv("SDXLHOST_SHARED_DIR");
  const fs::path index = fs::path(shared && *shared ? shared : SDXLHOST_SHARED_DIR) / "goldens/schedulers/index.json";
  ASSERT_TRUE(fs::exists(index)) << index;
  const json golden = test_support::read_json(index);
  json config = golden.at("sdxl_scheduler_config");
  const schedulers::TrainSchedule s = schedulers::make_train_schedule(config);
  const auto& betas = golden.at("betas").at("data");
  const auto& acp = golden.at("alphas_cumprod").at("data");
  ASSERT_EQ(s.betas.size(), betas.size());
  for (size_t i = 0; i < betas.size(); ++i) {
    ASSERT_EQ(s.betas[i], betas[i].get<float>()) << "beta " << i;
    ASSERT_EQ(s.alphas_cumprod[i], acp[i].get<float>()) << "alphas_cumprod " << i;
  }
}

TEST(SchedulerPlugin, EveryClassRunsAnyStepCountOnAnyFloatDtype) {
  for (const auto& name : kClasses) {
    for (int steps : {1, 2, 3, 7, 30}) {
      for (at::ScalarType dtype : {at::kFloat, at::kDouble, at::kBFloat16}) {
        auto s = create(name);
        SeededNoise noise;
        at::Tensor out;
        ASSERT_NO_THROW(out = run_loop(*s, steps, dtype, noise)) << name << " " << steps;
        EXPECT_EQ(out.sizes(), (at::IntArrayRef{1, 4, 8, 8})) << name;
        EXPECT_TRUE(at::isfinite(out).all().item<bool>()) << name << " steps " << steps;
        EXPECT_EQ(s->timesteps().numel(), s->order() == 2 ? 2 * steps - 1 : steps) << name;
      }
    }
  }
  for (const auto& overrides : {json{{"use_karras_sigmas", true}}, json{{"use_exponential_sigmas", true}},
                                json{{"use_beta_sigmas", true}}, json{{"use_lu_lambdas", true}},
                                json{{"timestep_spacing", "trailing"}}, json{{"beta_schedule", "squaredcos_cap_v2"}},
                                json{{"interpolation_type", "log_linear"}},
                                json{{"timestep_type", "continuous"}, {"prediction_type", "v_prediction"}},
                                json{{"final_sigmas_type", "sigma_min"}, {"solver_order", 3}},
                                json{{"rescale_betas_zero_snr", true}, {"prediction_type", "v_prediction"},
                                     {"timestep_spacing", "trailing"}},
                                json{{"timestep_spacing", "linspace"}}, json{{"prediction_type", "v_prediction"}}}) {
    for (const auto& name : kClasses) {
      auto s = create(name, overrides);
      SeededNoise noise;
      EXPECT_TRUE(at::isfinite(run_loop(*s, 12, at::kFloat, noise)).all().item<bool>()) << name << overrides.dump();
    }
  }
}

TEST(SchedulerPlugin, StochasticSchedulersDrawOncePerStepThroughTheNoiseSource) {
  const std::map<std::string, std::pair<json, int>> cases = {
      {"EulerAncestralDiscreteScheduler", {json::object(), 10}},
      {"DPMSolverMultistepScheduler", {{{"algorithm_type", "sde-dpmsolver++"}}, 10}},
      {"KDPM2AncestralDiscreteScheduler", {json::object(), 9}},  // second-order calls only
      {"DDIMScheduler", {{{"eta", 1.0}}, 10}},
      {"EulerDiscreteScheduler", {json::object(), 0}},
      {"DDIMScheduler", {{{"eta", 0.0}}, 0}},
  };
  for (const auto& [name, c] : cases) {
    auto s = create(name, c.first);
    SeededNoise noise;
    run_loop(*s, 10, at::kFloat, noise);
    EXPECT_EQ(noise.draws, c.second) << name << c.first.dump();
  }
}

TEST(SchedulerPlugin, MisuseIsAnErrorNotACrash) {
  auto s = create("EulerDiscreteScheduler");
  SeededNoise noise;
  const at::Tensor x = at::zeros({1, 4, 8, 8});
  EXPECT_THROW(s->step(x, at::scalar_tensor(500.0), x, noise), sdk::Error);  // before set_timesteps
  s->set_timesteps(10);
  EXPECT_THROW(s->set_begin_index(10), sdk::Error);
  EXPECT_THROW(s->step(x, at::scalar_tensor(123.25), x, noise), sdk::Error);  // not in the schedule
  auto ddim = create("DDIMScheduler");
  EXPECT_THROW(ddim->set_timesteps(5000), sdk::Error);
  for (const auto& name : kClasses) {
    for (int bad : {0, -3}) {
      try {
        create(name)->set_timesteps(bad);
        ADD_FAILURE() << name << " accepted " << bad << " steps";
      } catch (const sdk::Error& e) {
        EXPECT_EQ(e.field(), "data.hyperparameters.num_inference_steps") << name;
      }
    }
  }
}

TEST(DenoiseWindow, StrengthDenoisingStartAndEndFollowTheSdxlPipelines) {
  auto euler = create("Euler");  // leading, offset 1: 961, 921, ..., 41, 1 for 25 steps
  euler->set_timesteps(25);
  const nn::DenoiseWindow w = nn::strength_window(*euler, 25, 0.3);  // int(7.5) = 7 steps
  EXPECT_EQ(w.begin_index, 18);
  EXPECT_EQ(w.timesteps.numel(), 7);
  EXPECT_EQ(w.timesteps[0].item<float>(), 241.0f);
  EXPECT_THROW(nn::strength_window(*euler, 25, 0.01), sdk::Error);  // no step left

  euler->set_timesteps(25);
  const nn::DenoiseWindow refine = nn::denoising_start_window(*euler, 0.8);  // cutoff 200: 161..1
  EXPECT_EQ(refine.begin_index, 20);
  EXPECT_EQ(refine.timesteps.numel(), 5);
  const at::Tensor base = nn::denoising_end_timesteps(*euler, euler->timesteps(), 0.8);  // >= 200
  EXPECT_EQ(base.numel(), 20);
  EXPECT_EQ(base.numel() + refine.timesteps.numel(), euler->timesteps().numel());

  auto heun = create("Heun");  // t0, t1, t1, ...: 49 entries; below 200: 161,161,...,1,1 = 10 -> 11
  heun->set_timesteps(25);
  const nn::DenoiseWindow h = nn::denoising_start_window(*heun, 0.8);
  EXPECT_EQ(h.timesteps.numel(), 11);
  EXPECT_EQ(h.begin_index, 38);
  SeededNoise noise;  // the window's loop runs: starts in the corrector half of 201's pair
  at::Tensor x = at::randn({1, 4, 8, 8});
  for (int64_t k = 0; k < h.timesteps.numel(); ++k)
    x = heun->step(heun->scale_model_input(x, h.timesteps[k]) * 0.1, h.timesteps[k], x, noise);
  EXPECT_TRUE(at::isfinite(x).all().item<bool>());
}

TEST(ScheduleTables, ExponentialAndBetaRampsRunFromSigmaMaxToSigmaMin) {
  const std::vector<double> e = schedulers::exponential_sigmas(0.03, 14.6, 5);
  ASSERT_EQ(e.size(), 5u);
  EXPECT_DOUBLE_EQ(e.front(), 14.6);
  EXPECT_NEAR(e.back(), 0.03, 1e-15);
  EXPECT_NEAR(e[2], std::sqrt(0.03 * 14.6), 1e-12);  // geometric midpoint
  // I_x(0.6, 0.6): symmetric (I_0.5 = 0.5); I_0.1 and I_0.3 by Simpson's rule after u = x^0.6.
  EXPECT_NEAR(schedulers::regularized_incomplete_beta(0.5, 0.6, 0.6), 0.5, 1e-14);
  EXPECT_NEAR(schedulers::regularized_incomplete_beta(0.1, 0.6, 0.6), 0.17604725434603585, 1e-12);
  EXPECT_NEAR(schedulers::regularized_incomplete_beta(0.3, 0.6, 0.6), 0.35252651177214195, 1e-12);
  EXPECT_NEAR(schedulers::regularized_incomplete_beta(0.25, 2, 3), 0.26171875, 1e-14);  // closed form
  EXPECT_NEAR(schedulers::regularized_incomplete_beta(0.9, 0.6, 0.6) + schedulers::regularized_incomplete_beta(0.1, 0.6, 0.6),
              1.0, 1e-14);
  const std::vector<double> b = schedulers::beta_sigmas(0.03, 14.6, 7);
  ASSERT_EQ(b.size(), 7u);
  EXPECT_DOUBLE_EQ(b.front(), 14.6);
  EXPECT_DOUBLE_EQ(b.back(), 0.03);
  EXPECT_NEAR(b[3], 0.03 + 0.5 * (14.6 - 0.03), 1e-12);  // ppf(0.5) = 0.5 by symmetry
  for (size_t i = 1; i < b.size(); ++i) EXPECT_LT(b[i], b[i - 1]);
}

TEST(SchedulerPlugin, LuLambdasSpanTheTableUniformlyInLogSigma) {
  auto s = create("DPMSolverMultistepScheduler", {{"use_lu_lambdas", true}});
  s->set_timesteps(10);
  const at::Tensor ts = s->timesteps(), sig = s->sigmas();
  ASSERT_EQ(ts.numel(), 10);
  EXPECT_EQ(ts[0].item<int64_t>(), 999);
  EXPECT_EQ(ts[9].item<int64_t>(), 0);
  for (int64_t i = 1; i < 10; ++i) EXPECT_LT(ts[i].item<int64_t>(), ts[i - 1].item<int64_t>());
  const at::Tensor logs = sig.slice(0, 0, 10).to(at::kDouble).log();
  const at::Tensor gaps = logs.slice(0, 1) - logs.slice(0, 0, 9);
  EXPECT_LT((gaps - gaps.mean()).abs().max().item<double>(), 1e-5);  // equal steps in log sigma
  EXPECT_EQ(sig[10].item<float>(), 0.0f);                              // final_sigmas_type zero
}

TEST(SchedulerPlugin, DynamicThresholdingBoundsThePredictedSample) {
  // DDIM with thresholding: x0 is clamped to the 99.5% |x0| quantile (>= 1, <= sample_max_value)
  // and divided by it, so with sample_max_value 1 every x0 lies in [-1, 1]; a DDIM step from
  // t to t_prev is then sqrt(acp_prev) * x0 + direction * eps.
  for (const auto& name : {"DDIMScheduler", "DPMSolverMultistepScheduler", "DPMSolverSinglestepScheduler",
                           "UniPCMultistepScheduler"}) {
    auto s = create(name, {{"thresholding", true}, {"sample_max_value", 1.5}});
    SeededNoise noise;
    EXPECT_TRUE(at::isfinite(run_loop(*s, 10, at::kFloat, noise)).all().item<bool>()) << name;
    EXPECT_EQ(s->config().at("thresholding"), true);
  }
  auto plain = create("DDIMScheduler", {{"clip_sample", false}});
  auto thresholded = create("DDIMScheduler", {{"clip_sample", false}, {"thresholding", true}});
  plain->set_timesteps(10);
  thresholded->set_timesteps(10);
  SeededNoise noise;
  const at::Tensor x = at::randn({2, 4, 8, 8}) * 50;  // x0 = (x - sqrt(1 - acp) eps) / sqrt(acp): large
  const at::Tensor eps = at::zeros({2, 4, 8, 8});
  const at::Tensor t = plain->timesteps()[9];  // t = 1: acp_prev = final_alpha_cumprod (0.99915)
  const at::Tensor a = plain->step(eps, t, x, noise), b = thresholded->step(eps, t, x, noise);
  EXPECT_GT(a.abs().max().item<double>(), 10.0);
  EXPECT_LE(b.abs().max().item<double>(), 1.0 + 1e-6);  // sqrt(acp_prev) * [-1, 1] + 0
  EXPECT_THROW(create("DPMSolverSinglestepScheduler", {{"thresholding", true}, {"algorithm_type", "dpmsolver"},
                                                        {"final_sigmas_type", "sigma_min"}}),
               sdk::Error);
}
