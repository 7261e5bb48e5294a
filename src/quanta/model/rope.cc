#include "quanta/model/rope.h"

#include <algorithm>
#include <cmath>

#include "quanta/core/error.h"

namespace quanta::model {

namespace {
constexpr double kPi = 3.14159265358979323846;

// base^(2i/dim) for i < dim/2, in f32 as torch evaluates `base ** (arange(0, dim, 2).float() / dim)`.
std::vector<float> position_freqs(double base, int dim) {
  std::vector<float> out(static_cast<size_t>(dim / 2));
  for (int i = 0; i < dim / 2; ++i) {
    float exponent = static_cast<float>(2 * i) / static_cast<float>(dim);
    out[static_cast<size_t>(i)] = std::pow(static_cast<float>(base), exponent);
  }
  return out;
}
}  // namespace

RopeTable compute_rope(const format::RopeConfig& rope, int64_t d_head) {
  RopeTable t;
  const int dim = static_cast<int>(static_cast<double>(d_head) * rope.partial_rotary_factor);
  t.d_rot = dim;
  std::vector<float> pos_freqs = position_freqs(rope.theta, dim);
  t.inv_freq.resize(pos_freqs.size());
  for (size_t i = 0; i < pos_freqs.size(); ++i) t.inv_freq[i] = 1.0f / pos_freqs[i];

  if (!rope.freq_divisors.empty()) {
    if (rope.freq_divisors.size() != t.inv_freq.size())
      throw Error("rope frequency divisors: " + std::to_string(rope.freq_divisors.size()) + " values for " +
                      std::to_string(t.inv_freq.size()) + " frequencies", {.tensor = "rope_freqs.weight"});
    for (size_t i = 0; i < t.inv_freq.size(); ++i) t.inv_freq[i] /= rope.freq_divisors[i];
  }
  if (rope.type == "default") return t;

  if (rope.type == "linear") {
    for (float& f : t.inv_freq) f /= static_cast<float>(rope.factor);
    return t;
  }

  if (rope.type == "llama3") {
    // Frequencies with long wavelengths are divided by `factor`, short ones kept,
    // and those in between interpolated smoothly (Llama 3.1).
    const float factor = static_cast<float>(rope.factor);
    const float lo = static_cast<float>(rope.low_freq_factor), hi = static_cast<float>(rope.high_freq_factor);
    const float old_len = static_cast<float>(rope.original_max_position_embeddings);
    if (hi == lo) throw Error("llama3 rope needs high_freq_factor != low_freq_factor", {.field = "rope.high_freq_factor"});
    const float low_freq_wavelen = old_len / lo;
    const float high_freq_wavelen = old_len / hi;
    for (float& f : t.inv_freq) {
      float wavelen = static_cast<float>(2 * kPi) / f;
      float scaled = wavelen > low_freq_wavelen ? f / factor : f;
      if (!(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen)) {
        float smooth = (old_len / wavelen - lo) / (hi - lo);
        scaled = (1 - smooth) * scaled / factor + smooth * scaled;
      }
      f = scaled;
    }
    return t;
  }

  // yarn: blend interpolated (divided by factor) and extrapolated frequencies
  // with a linear ramp over the dimensions between the correction bounds.
  const double factor = rope.factor;
  auto mscale_of = [](double scale, double m) { return scale <= 1 ? 1.0 : 0.1 * m * std::log(scale) + 1.0; };
  if (rope.attention_factor) {
    t.attention_factor = static_cast<float>(*rope.attention_factor);
  } else if (rope.mscale && rope.mscale_all_dim && *rope.mscale != 0 && *rope.mscale_all_dim != 0) {
    t.attention_factor = static_cast<float>(mscale_of(factor, *rope.mscale) / mscale_of(factor, *rope.mscale_all_dim));
  } else {
    t.attention_factor = static_cast<float>(mscale_of(factor, 1.0));
  }
  const double max_pos = static_cast<double>(rope.original_max_position_embeddings);
  if (max_pos <= 0) throw Error("yarn rope needs original_max_position_embeddings", {.field = "rope.original_max_position_embeddings"});
  auto correction_dim = [&](double rotations) {
    return (dim * std::log(max_pos / (rotations * 2 * kPi))) / (2 * std::log(rope.theta));
  };
  double low = correction_dim(rope.beta_fast), high = correction_dim(rope.beta_slow);
  if (rope.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, static_cast<double>(dim - 1));
  if (low == high) high += 0.001;  // as transformers: avoid a zero-width ramp
  for (size_t i = 0; i < t.inv_freq.size(); ++i) {
    float ramp = (static_cast<float>(i) - static_cast<float>(low)) / static_cast<float>(high - low);
    ramp = std::clamp(ramp, 0.0f, 1.0f);
    float extrapolation_factor = 1.0f - ramp;
    float extrapolated = 1.0f / pos_freqs[i];
    float interpolated = 1.0f / (static_cast<float>(factor) * pos_freqs[i]);
    t.inv_freq[i] = interpolated * (1.0f - extrapolation_factor) + extrapolated * extrapolation_factor;
  }
  return t;
}

}  // namespace quanta::model
