#include "schedule_tables.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <utility>

namespace sdxlhost::schedulers {

std::vector<float> torch_linspace_f32(double start_d, double end_d, int steps) {
  std::vector<float> out(static_cast<size_t>(std::max(steps, 0)));
  if (steps <= 0) return out;
  const float start = static_cast<float>(start_d);
  const float end = static_cast<float>(end_d);
  if (steps == 1) {
    out[0] = start;
    return out;
  }
  // libtorch's CPU kernel: vector chunks of 8 (two per loop iteration) counted from the nearer
  // end, the remainder scalar; the compiler fuses the multiply-adds.
  const float step = (end - start) / static_cast<float>(steps - 1);
  const int halfway = steps / 2;
  auto value_at = [&](int idx) {
    return idx < halfway ? std::fmaf(step, static_cast<float>(idx), start)
                         : std::fmaf(-step, static_cast<float>(steps - 1 - idx), end);
  };
  const int vector_end = (steps / 16) * 16;
  for (int idx = 0; idx < vector_end; idx += 8) {
    const float base = value_at(idx);
    for (int lane = 0; lane < 8; ++lane)
      out[idx + lane] = std::fmaf(static_cast<float>(lane), step, base);
  }
  for (int idx = vector_end; idx < steps; ++idx) out[idx] = value_at(idx);
  return out;
}

std::vector<double> numpy_linspace(double start, double stop, int num) {
  std::vector<double> out(static_cast<size_t>(std::max(num, 0)));
  if (num <= 0) return out;
  const int div = num - 1;
  const double delta = stop - start;
  const double step = div > 0 ? delta / div : delta;
  for (int i = 0; i < num; ++i) out[i] = (step == 0.0 ? (i / static_cast<double>(div)) * delta : i * step) + start;
  if (num > 1) out[num - 1] = stop;
  return out;
}

std::vector<double> numpy_arange_down(double start, double stop, double step) {
  const double length = std::ceil((stop - start) / step);
  std::vector<double> out;
  if (!(length > 0)) return out;
  out.resize(static_cast<size_t>(length));
  out[0] = start;
  if (out.size() > 1) {
    const double delta = (start + step) - start;
    for (size_t i = 1; i < out.size(); ++i) out[i] = start + static_cast<double>(i) * delta;
  }
  return out;
}

double numpy_round(double value) { return std::nearbyint(value); }

/// numpy 1.x's float32 `np.log` on contiguous arrays (its AVX2-FMA3/AVX512F kernel): mantissa
/// in (sqrt(1/2), sqrt(2)], a degree-5/degree-5 rational approximation of log(1 + y) evaluated
/// with fused multiply-adds, plus k * ln2. Not correctly rounded (up to ~4 ulp), which is why
/// it matters for the fractional timesteps derived from the table. Positive normal inputs only.
float numpy_logf(float x) {
  if (!(x > 0.0f)) return x == 0.0f ? -INFINITY : NAN;
  if (std::isinf(x)) return x;
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  float exponent = static_cast<float>(static_cast<int32_t>(bits >> 23) - 126);
  const uint32_t mantissa_bits = (bits & 0x7fffffu) | (126u << 23);
  float m;
  std::memcpy(&m, &mantissa_bits, sizeof m);
  if (m <= 0.707106781186547524400844362104849039f) {
    m = m + m;
    exponent = exponent - 1.0f;
  }
  const float y = m - 1.0f;
  static const float p[6] = {0.0f, 9.999999999999998702752e-01f, 2.112677543073053063722e+00f,
                             1.480000633576506585156e+00f, 3.808837741388407920751e-01f,
                             2.589979117907922693523e-02f};
  static const float q[6] = {1.0f, 2.612677543073109236779e+00f, 2.453006071784736363091e+00f,
                             9.864942958519418960339e-01f, 1.546476374983906719538e-01f,
                             5.875095403124574342950e-03f};
  float num = std::fmaf(p[5], y, p[4]);
  float den = std::fmaf(q[5], y, q[4]);
  for (int k = 3; k >= 0; --k) {
    num = std::fmaf(num, y, p[k]);
    den = std::fmaf(den, y, q[k]);
  }
  return std::fmaf(exponent, 0.693147180559945309417232121458176568f, num / den);
}

namespace {

std::vector<float> alpha_bar_betas(int n, bool exponential) {
  auto alpha_bar = [exponential](double t) {
    if (exponential) return std::exp(t * -12.0);
    const double c = std::cos((t + 0.008) / 1.008 * M_PI / 2);
    return c * c;
  };
  std::vector<float> betas(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    const double t1 = static_cast<double>(i) / n;
    const double t2 = static_cast<double>(i + 1) / n;
    betas[i] = static_cast<float>(std::min(1 - alpha_bar(t2) / alpha_bar(t1), 0.999));
  }
  return betas;
}

/// torch.cumprod on a float32 CPU tensor: accumulates in double, rounds every output.
std::vector<float> cumprod_f32(const std::vector<float>& values) {
  std::vector<float> out(values.size());
  double product = 1.0;
  for (size_t i = 0; i < values.size(); ++i) {
    product *= static_cast<double>(values[i]);
    out[i] = static_cast<float>(product);
  }
  return out;
}

std::vector<float> one_minus(const std::vector<float>& values) {
  std::vector<float> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) out[i] = 1.0f - values[i];
  return out;
}

/// diffusers' rescale_zero_terminal_snr, in float32 like torch.
std::vector<float> rescale_zero_terminal_snr(const std::vector<float>& betas) {
  std::vector<float> root = cumprod_f32(one_minus(betas));
  for (float& v : root) v = std::sqrt(v);
  const float first = root.front();
  const float last = root.back();
  const float scale = first / (first - last);
  for (float& v : root) v = (v - last) * scale;
  std::vector<float> alphas(root.size());
  for (size_t i = 0; i < root.size(); ++i) {
    const float bar = root[i] * root[i];
    alphas[i] = i == 0 ? bar : bar / (root[i - 1] * root[i - 1]);
  }
  return one_minus(alphas);
}

}  // namespace

TrainSchedule make_train_schedule(const nlohmann::json& config, bool floor_terminal_alpha) {
  TrainSchedule s;
  s.num_train_timesteps = config.at("num_train_timesteps").get<int>();
  const int n = s.num_train_timesteps;
  const std::string schedule = config.at("beta_schedule").get<std::string>();
  const double beta_start = config.at("beta_start").get<double>();
  const double beta_end = config.at("beta_end").get<double>();
  const auto trained = config.find("trained_betas");
  if (trained != config.end() && trained->is_array()) {
    for (const auto& b : *trained) s.betas.push_back(static_cast<float>(b.get<double>()));
  } else if (schedule == "linear") {
    s.betas = torch_linspace_f32(beta_start, beta_end, n);
  } else if (schedule == "scaled_linear") {
    s.betas = torch_linspace_f32(std::pow(beta_start, 0.5), std::pow(beta_end, 0.5), n);
    for (float& b : s.betas) b = b * b;
  } else if (schedule == "squaredcos_cap_v2") {
    s.betas = alpha_bar_betas(n, false);
  } else {  // "exp" (HeunDiscrete only; validated by the caller)
    s.betas = alpha_bar_betas(n, true);
  }
  const bool rescale = config.value("rescale_betas_zero_snr", false);
  if (rescale) s.betas = rescale_zero_terminal_snr(s.betas);
  s.alphas_cumprod = cumprod_f32(one_minus(s.betas));
  if (rescale && floor_terminal_alpha && !s.alphas_cumprod.empty()) s.alphas_cumprod.back() = std::ldexp(1.0f, -24);
  s.sigmas.resize(s.alphas_cumprod.size());
  s.log_sigmas.resize(s.alphas_cumprod.size());
  for (size_t i = 0; i < s.sigmas.size(); ++i) {
    const float acp = s.alphas_cumprod[i];
    s.sigmas[i] = std::sqrt((1.0f - acp) / acp);
    s.log_sigmas[i] = numpy_logf(s.sigmas[i]);
  }
  return s;
}

double interp_on_index(double x, const std::vector<double>& fp) {
  const int n = static_cast<int>(fp.size());
  if (n == 0) return 0.0;
  if (std::isnan(x)) return x;
  if (x <= 0.0) return fp.front();
  if (x >= n - 1) return fp.back();
  const int j = static_cast<int>(std::floor(x));
  if (static_cast<double>(j) == x) return fp[j];
  const double slope = (fp[j + 1] - fp[j]) / 1.0;
  return slope * (x - j) + fp[j];
}

std::vector<double> karras_sigmas(double sigma_min, double sigma_max, int num_inference_steps) {
  const double rho = 7.0;
  const std::vector<double> ramp = numpy_linspace(0.0, 1.0, num_inference_steps);
  const double min_inv_rho = std::pow(sigma_min, 1.0 / rho);
  const double max_inv_rho = std::pow(sigma_max, 1.0 / rho);
  std::vector<double> sigmas(ramp.size());
  for (size_t i = 0; i < ramp.size(); ++i)
    sigmas[i] = std::pow(max_inv_rho + ramp[i] * (min_inv_rho - max_inv_rho), rho);
  return sigmas;
}

namespace {

/// Index below and float32 weight towards the index above, as `_sigma_to_t` computes them.
std::pair<int, float> sigma_position(double sigma, const std::vector<float>& log_sigmas) {
  const float log_sigma = static_cast<float>(std::log(std::max(sigma, 1e-10)));
  const int n = static_cast<int>(log_sigmas.size());
  // Last index whose log-sigma is <= log_sigma (0 when none), clipped to n - 2.
  int low = 0;
  for (int i = 0; i < n; ++i)
    if (log_sigma - log_sigmas[i] >= 0) low = i;
  low = std::min(low, n - 2);
  const float lo = log_sigmas[low];
  const float hi = log_sigmas[low + 1];
  float w = (lo - log_sigma) / (lo - hi);
  w = std::clamp(w, 0.0f, 1.0f);
  return {low, w};
}

}  // namespace

std::vector<double> exponential_sigmas(double sigma_min, double sigma_max, int num_inference_steps) {
  std::vector<double> sigmas = numpy_linspace(std::log(sigma_max), std::log(sigma_min), num_inference_steps);
  for (double& s : sigmas) s = std::exp(s);
  return sigmas;
}

namespace {

/// Continued fraction of I_x(a, b) (modified Lentz), converging for x < (a + 1) / (a + b + 2).
double incomplete_beta_fraction(double x, double a, double b) {
  const double tiny = 1e-300;
  double c = 1.0, d = 1.0 - (a + b) * x / (a + 1.0);
  if (std::abs(d) < tiny) d = tiny;
  d = 1.0 / d;
  double f = d;
  for (int m = 1; m <= 10000; ++m) {
    for (int half = 0; half < 2; ++half) {
      const double numerator = half == 0 ? m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m))
                                         : -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0));
      d = 1.0 + numerator * d;
      if (std::abs(d) < tiny) d = tiny;
      c = 1.0 + numerator / c;
      if (std::abs(c) < tiny) c = tiny;
      d = 1.0 / d;
      const double delta = c * d;
      f *= delta;
      if (half == 1 && std::abs(delta - 1.0) < 1e-16) return f;
    }
  }
  return f;
}

}  // namespace

double regularized_incomplete_beta(double x, double a, double b) {
  if (x <= 0.0) return 0.0;
  if (x >= 1.0) return 1.0;
  const double log_front = std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + a * std::log(x) + b * std::log1p(-x);
  if (x < (a + 1.0) / (a + b + 2.0)) return std::exp(log_front) * incomplete_beta_fraction(x, a, b) / a;
  return 1.0 - std::exp(log_front) * incomplete_beta_fraction(1.0 - x, b, a) / b;
}

namespace {

/// scipy.stats.beta.ppf(q, a, b) by bisection on I_x (monotone; 200 halvings reach the
/// neighbouring doubles).
double beta_ppf(double q, double a, double b) {
  if (q <= 0.0) return 0.0;
  if (q >= 1.0) return 1.0;
  double lo = 0.0, hi = 1.0;
  for (int i = 0; i < 200 && hi - lo > 0; ++i) {
    const double mid = 0.5 * (lo + hi);
    if (mid <= lo || mid >= hi) break;
    (regularized_incomplete_beta(mid, a, b) < q ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

}  // namespace

std::vector<double> beta_sigmas(double sigma_min, double sigma_max, int num_inference_steps) {
  std::vector<double> sigmas;
  for (double t : numpy_linspace(0.0, 1.0, num_inference_steps))
    sigmas.push_back(sigma_min + beta_ppf(1.0 - t, 0.6, 0.6) * (sigma_max - sigma_min));
  return sigmas;
}

double sigma_to_t(double sigma, const std::vector<float>& log_sigmas) {
  const auto [low, w] = sigma_position(sigma, log_sigmas);
  return static_cast<double>(1.0f - w) * low + static_cast<double>(w) * (low + 1);
}

float sigma_to_t_f32(float sigma, const std::vector<float>& log_sigmas) {
  const auto [low, w] = sigma_position(sigma, log_sigmas);
  return (1.0f - w) * static_cast<float>(low) + w * static_cast<float>(low + 1);
}

std::vector<double> sigma_table_f64(const TrainSchedule& schedule) {
  return std::vector<double>(schedule.sigmas.begin(), schedule.sigmas.end());
}

}  // namespace sdxlhost::schedulers
