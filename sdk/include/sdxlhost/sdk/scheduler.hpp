#pragma once
/// @file scheduler.hpp
/// The scheduler interface, shaped like diffusers' schedulers (same names, same call order), so
/// a denoising loop written against it reproduces what a diffusers pipeline computes:
///
///     scheduler->set_timesteps(n);               // img2img: then set_begin_index(t_start * order)
///     x = noise * scheduler->init_noise_sigma(); // txt2img
///     for t in timesteps: eps = unet(scheduler->scale_model_input(x, t), t);
///                         x = scheduler->step(eps, t, x, noise_source);
///
/// Schedulers are created per job from a registry (see registries.hpp) and are not shared.
/// Thread-safety: none; one job uses one instance.

#include <ATen/core/Tensor.h>

#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

namespace sdxlhost::sdk {

/// Where a stochastic scheduler (ancestral, SDE) draws its noise. The SDXL plugin passes the
/// request's CPU generator (same stream as diffusers' `torch.Generator("cpu").manual_seed(S)`);
/// tests pass recorded draws.
class NoiseSource {
 public:
  virtual ~NoiseSource() = default;
  /// A float32 standard-normal tensor of `shape` on the CPU (the scheduler moves it as needed).
  virtual at::Tensor randn(at::IntArrayRef shape) = 0;
};

/// One diffusers scheduler.
class Scheduler {
 public:
  virtual ~Scheduler() = default;

  /// diffusers' class name ("EulerDiscreteScheduler").
  virtual std::string class_name() const = 0;
  /// The effective config (all keys after defaults), as diffusers' `scheduler.config`.
  virtual const nlohmann::json& config() const = 0;
  /// Steps taken per timestep pair: 2 for Heun / KDPM2*, else 1.
  virtual int order() const = 0;

  /// Prepares the schedule for `num_inference_steps`. Resets all multistep state.
  virtual void set_timesteps(int num_inference_steps) = 0;
  /// The timesteps to loop over (length n, or 2n-1 for order-2 schedulers); int64 or float32
  /// as diffusers stores them.
  virtual at::Tensor timesteps() const = 0;
  /// The sigma schedule (undefined tensor for DDIM, which has none).
  virtual at::Tensor sigmas() const = 0;
  /// Starts the loop at index `begin_index` of timesteps() (img2img, refiner).
  virtual void set_begin_index(int begin_index) = 0;
  /// Scale of the initial noise for text-to-image.
  virtual double init_noise_sigma() const = 0;

  /// The model input for timestep `t` (e.g. x / sqrt(sigma^2 + 1) for Euler).
  virtual at::Tensor scale_model_input(const at::Tensor& sample, const at::Tensor& timestep) = 0;
  /// One step: the previous sample given the model output at `t`.
  virtual at::Tensor step(const at::Tensor& model_output, const at::Tensor& timestep,
                          const at::Tensor& sample, NoiseSource& noise) = 0;
  /// Noises `original` to the level of `timesteps` (img2img start).
  virtual at::Tensor add_noise(const at::Tensor& original, const at::Tensor& noise,
                               const at::Tensor& timesteps) = 0;
};

/// Creates a scheduler from a config (SDXL's scheduler_config.json merged with overrides).
/// Throws Error(ValidationError) for unknown or conflicting options, naming the option.
using SchedulerFactory = std::function<std::unique_ptr<Scheduler>(const nlohmann::json& config)>;

}  // namespace sdxlhost::sdk
