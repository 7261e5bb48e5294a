// FP8 E4M3 Linear (quant/fp8_linear.h) against the compressed-tensors formula in
// double: per-channel and block weight scales; no, per-token, per-group and static
// FP8 activations.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "quanta/core/dtype.h"
#include "quanta/core/thread_pool.h"
#include "quanta/quant/fp8_linear.h"

namespace quanta::quant {
namespace {

TEST(Fp8Linear, MatchesTheFormulaForEveryActivationModeAndScaleLayout) {
  std::mt19937 rng(21);
  std::normal_distribution<float> nd;
  ThreadPool pool(2);
  const int64_t N = 40, K = 96;
  std::vector<uint8_t> codes(N * K);
  for (auto& c : codes) {
    do c = static_cast<uint8_t>(rng() & 0xFF);
    while ((c & 0x7F) == 0x7F);  // no NaN codes
  }
  Tensor weight = Tensor::zeros(DType::kF8E4M3, {N, K});
  std::copy(codes.begin(), codes.end(), weight.data_mut<uint8_t>());
  for (bool blocks : {false, true})
    for (Fp8Act act : {Fp8Act::kNone, Fp8Act::kToken, Fp8Act::kGroup, Fp8Act::kStatic})
      for (int64_t T : {1, 5, 33}) {
        Fp8LinearWeights w;
        w.weight = weight;
        w.block_n = blocks ? 16 : 0;
        w.block_k = blocks ? 32 : 0;
        const int64_t n_scales = blocks ? 3 * 3 : N;
        for (int64_t i = 0; i < n_scales; ++i) w.scale.push_back(std::fabs(nd(rng)) * 1e-3f + 1e-4f);
        w.act = act;
        w.act_group = 32;
        w.input_scale = 0.01f;
        for (int64_t n = 0; n < N; ++n) w.bias.push_back(nd(rng));
        auto lin = make_fp8_linear(w);
        std::vector<float> x(T * K), y(T * N);
        for (auto& v : x) v = nd(rng) * 3.0f;
        lin->forward(x.data(), T, y.data(), pool);
        for (int64_t t = 0; t < T; ++t) {
          std::vector<double> xa(K);
          const int64_t span = act == Fp8Act::kGroup ? 32 : K;
          for (int64_t k0 = 0; k0 < K; k0 += span) {
            double amax = 0;
            for (int64_t k = k0; k < k0 + span; ++k) amax = std::max(amax, double{std::fabs(x[t * K + k])});
            const float s = act == Fp8Act::kStatic ? 0.01f : static_cast<float>(amax) / 448.0f;
            for (int64_t k = k0; k < k0 + span; ++k) {
              if (act == Fp8Act::kNone) {
                xa[k] = x[t * K + k];
                continue;
              }
              const float v = std::clamp(x[t * K + k] / s, -448.0f, 448.0f);
              xa[k] = double{e4m3fn_to_f32(f32_to_e4m3fn(v))} * s;
            }
          }
          for (int64_t n = 0; n < N; ++n) {
            double want = w.bias[n], abs = std::fabs(w.bias[n]);
            for (int64_t k = 0; k < K; ++k) {
              const double s = blocks ? w.scale[(n / 16) * 3 + k / 32] : w.scale[n];
              const double p = xa[k] * e4m3fn_to_f32(codes[n * K + k]) * s;
              want += p;
              abs += std::fabs(p);
            }
            ASSERT_NEAR(y[t * N + n], want, (K + 4) * 2 * std::numeric_limits<float>::epsilon() * abs + 1e-6)
                << "blocks=" << blocks << " act=" << static_cast<int>(act) << " T=" << T;
          }
        }
      }
}

}  // namespace
}  // namespace quanta::quant
