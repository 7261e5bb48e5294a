// Quantized Linear kernels: every ISA path against the scalar reference, and the
// layers (quant/quantized_linear.h) against a direct double-precision
// computation of the spec's formulas (checkpoint-formats-1.md sec. 1.5-1.6).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "quanta/core/mx.h"
#include "quanta/core/thread_pool.h"
#include "quanta/kernels/quant_linear.h"
#include "quanta/quant/quantized_linear.h"

namespace quanta::kernels {
namespace {

std::vector<Isa> host_isas() {
  std::vector<Isa> out;
  for (int i = 0; i <= static_cast<int>(host_isa()); ++i) out.push_back(static_cast<Isa>(i));
  return out;
}

constexpr double kEps = std::numeric_limits<float>::epsilon();

// Error bound of two f32 evaluations of a length-k sum of products whose absolute
// terms add up to abs_sum, in any order (Higham: gamma_k * sum |terms| each).
double sum_tolerance(int64_t k, double abs_sum) {
  const double u = kEps / 2, gamma = (k + 2) * u / (1 - (k + 2) * u);
  return 2 * gamma * abs_sum + 1e-30;
}

struct Shape3 {
  int64_t t, n, k;
};
const Shape3 kShapes[] = {{1, 1, 32}, {1, 7, 64}, {2, 9, 96}, {3, 16, 160}, {5, 13, 256}, {4, 33, 1024}, {53, 6, 64}, {17, 22, 320}, {300, 12, 96}};

TEST(QuantLinearKernels, GemmS8IsExactOnEveryIsa) {
  std::mt19937 rng(1);
  for (Shape3 s : kShapes)
    for (int64_t k : {s.k, s.k + 5}) {  // with and without a tail of 32
      std::uniform_int_distribution<int> xd(-127, 127), wd(-128, 127);
      std::vector<int8_t> x(s.t * k), w(s.n * k);
      for (auto& v : x) v = static_cast<int8_t>(xd(rng));
      for (auto& v : w) v = static_cast<int8_t>(wd(rng));
      // Extremes: -128 weights against negative activations, the case the sign trick must get right.
      w[0] = -128;
      x[0] = -127;
      std::vector<int32_t> want(s.t * s.n);
      for (int64_t t = 0; t < s.t; ++t)
        for (int64_t n = 0; n < s.n; ++n) {
          int32_t a = 0;
          for (int64_t i = 0; i < k; ++i) a += x[t * k + i] * w[n * k + i];
          want[t * s.n + n] = a;
        }
      for (Isa isa : host_isas()) {
        std::vector<int32_t> got(s.t * s.n, 7);
        // Two row ranges, as threads split them.
        const int64_t mid = s.n / 2;
        quant_linear_kernels_for(isa).gemm_s8({x.data(), k, s.t, w.data(), k, k, 0, mid, got.data(), s.n});
        quant_linear_kernels_for(isa).gemm_s8({x.data(), k, s.t, w.data(), k, k, mid, s.n, got.data() + mid, s.n});
        EXPECT_EQ(got, want) << isa_name(isa) << " t=" << s.t << " n=" << s.n << " k=" << k;
        if (k % 32 != 0) continue;
        // The same weights interleaved by pack_rows4 (rows4 = n / 4 * 4, the rest
        // plain), over ranges that start on a 4-row group, as threads split them.
        std::vector<int8_t> packed(w.size());
        const int64_t rows4 = pack_rows4(w.data(), s.n, k, packed.data());
        EXPECT_EQ(rows4, s.n / 4 * 4);
        for (int64_t i = 0; i < s.n * k; ++i) ASSERT_EQ(rows4_at(packed.data(), rows4, k, i / k, i % k), w[i]);
        std::vector<int32_t> got4(s.t * s.n, 7);
        const int64_t mid4 = mid / 4 * 4;
        quant_linear_kernels_for(isa).gemm_s8({x.data(), k, s.t, packed.data(), k, k, 0, mid4, got4.data(), s.n, rows4});
        quant_linear_kernels_for(isa).gemm_s8({x.data(), k, s.t, packed.data(), k, k, mid4, s.n, got4.data() + mid4, s.n, rows4});
        EXPECT_EQ(got4, want) << isa_name(isa) << " packed t=" << s.t << " n=" << s.n << " k=" << k;
        // A range that ends inside a packed group.
        const int64_t n5 = std::min<int64_t>(5, s.n);
        std::vector<int32_t> got5(s.t * n5, 7), want5(s.t * n5);
        quant_linear_kernels_for(isa).gemm_s8({x.data(), k, s.t, packed.data(), k, k, 0, n5, got5.data(), n5, rows4});
        for (int64_t t = 0; t < s.t; ++t)
          for (int64_t n = 0; n < n5; ++n) want5[t * n5 + n] = want[t * s.n + n];
        EXPECT_EQ(got5, want5) << isa_name(isa) << " packed, rows [0, 5)";
      }
    }
}

TEST(QuantLinearKernels, GemmU4IsExactOnEveryIsa) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> xd(-7, 7), wd(-8, 7);
  for (Shape3 s : kShapes) {
    const int64_t k = s.k + (s.k >= 64 ? 32 * 130 : 0);  // also past the 128-block int16 span
    std::vector<int8_t> x(s.t * k), w(s.n * k);
    for (auto& v : x) v = static_cast<int8_t>(xd(rng));
    for (auto& v : w) v = static_cast<int8_t>(wd(rng));
    for (int64_t i = 0; i < std::min<int64_t>(k, 64); ++i) x[i] = -7, w[i] = -8;  // extremes
    std::vector<uint8_t> packed(s.n * k / 2);
    for (int64_t n = 0; n < s.n; ++n) pack_u4(w.data() + n * k, k, packed.data() + n * k / 2);
    std::vector<int32_t> want(s.t * s.n);
    for (int64_t t = 0; t < s.t; ++t)
      for (int64_t n = 0; n < s.n; ++n) {
        int32_t a = 0;
        for (int64_t i = 0; i < k; ++i) a += x[t * k + i] * (w[n * k + i] + 8);
        want[t * s.n + n] = a;
      }
    for (Isa isa : host_isas()) {
      std::vector<int32_t> got(s.t * s.n, 7);
      quant_linear_kernels_for(isa).gemm_u4({x.data(), k, s.t, reinterpret_cast<const int8_t*>(packed.data()), k / 2, k,
                                             0, s.n, got.data(), s.n});
      EXPECT_EQ(got, want) << isa_name(isa) << " t=" << s.t << " n=" << s.n << " k=" << k;
      // Rows paired by pack_rows2_u4: whole range, a range ending inside a pair, and
      // (all rows paired) the second half of the columns through an offset pointer.
      std::vector<uint8_t> paired(packed.size());
      const int64_t rows2 = pack_rows2_u4(packed.data(), s.n, k, paired.data());
      ASSERT_EQ(rows2, s.n / 2 * 2);
      const auto* wp = reinterpret_cast<const int8_t*>(paired.data());
      std::vector<int32_t> got2(s.t * s.n, 7);
      quant_linear_kernels_for(isa).gemm_u4({x.data(), k, s.t, wp, k / 2, k, 0, s.n, got2.data(), s.n, 0, rows2});
      EXPECT_EQ(got2, want) << isa_name(isa) << " paired t=" << s.t << " n=" << s.n;
      const int64_t n3 = std::min<int64_t>(3, s.n);
      std::vector<int32_t> got3(s.t * n3, 7), want3(s.t * n3);
      quant_linear_kernels_for(isa).gemm_u4({x.data(), k, s.t, wp, k / 2, k, 0, n3, got3.data(), n3, 0, rows2});
      for (int64_t t = 0; t < s.t; ++t)
        for (int64_t n = 0; n < n3; ++n) want3[t * n3 + n] = want[t * s.n + n];
      EXPECT_EQ(got3, want3) << isa_name(isa) << " paired, rows [0, 3)";
      if (s.n % 2 == 0 && k % 64 == 0) {
        const int64_t half = k / 2;  // columns [half, k): 32-blocks, so the pair offset is `half` bytes
        std::vector<int32_t> got_h(s.t * s.n, 7), want_h(s.t * s.n);
        quant_linear_kernels_for(isa).gemm_u4({x.data() + half, k, s.t, wp + half, k / 2, half, 0, s.n, got_h.data(), s.n, 0, rows2});
        for (int64_t t = 0; t < s.t; ++t)
          for (int64_t n = 0; n < s.n; ++n) {
            int32_t a = 0;
            for (int64_t i = half; i < k; ++i) a += x[t * k + i] * (w[n * k + i] + 8);
            want_h[t * s.n + n] = a;
          }
        EXPECT_EQ(got_h, want_h) << isa_name(isa) << " paired, second half of the columns";
      }
    }
  }
}

TEST(QuantLinearKernels, GemmF32S8MatchesReference) {
  std::mt19937 rng(2);
  std::normal_distribution<float> nd;
  std::uniform_int_distribution<int> wd(-128, 127);
  for (Shape3 s : kShapes) {
    const int64_t k = s.k + 3;
    std::vector<float> x(s.t * k);
    std::vector<int8_t> w(s.n * k);
    for (auto& v : x) v = nd(rng);
    for (auto& v : w) v = static_cast<int8_t>(wd(rng));
    std::vector<float> ref(s.t * s.n);
    quant_linear_reference_table().gemm_f32_s8({x.data(), k, s.t, w.data(), k, k, 0, s.n, ref.data(), s.n});
    for (Isa isa : host_isas()) {
      std::vector<float> got(s.t * s.n);
      quant_linear_kernels_for(isa).gemm_f32_s8({x.data(), k, s.t, w.data(), k, k, 0, s.n, got.data(), s.n});
      for (int64_t t = 0; t < s.t; ++t)
        for (int64_t n = 0; n < s.n; ++n) {
          double abs = 0;
          for (int64_t i = 0; i < k; ++i) abs += std::fabs(double{x[t * k + i]} * w[n * k + i]);
          EXPECT_NEAR(got[t * s.n + n], ref[t * s.n + n], sum_tolerance(k, abs)) << isa_name(isa);
        }
    }
  }
}

// Random MX weights: E4M3 codes (no NaN) or packed E2M1, scales around 2^-6.
struct MxWeights {
  std::vector<uint8_t> w, s;
};
MxWeights random_mx(std::mt19937& rng, bool fp8, int64_t n, int64_t k) {
  MxWeights m;
  std::uniform_int_distribution<int> byte(0, 255), sc(115, 125);
  m.w.resize(fp8 ? n * k : n * k / 2);
  for (auto& v : m.w) {
    v = static_cast<uint8_t>(byte(rng));
    if (fp8 && (v & 0x7F) == 0x7F) v = 0x7E;
  }
  m.s.resize(n * k / 32);
  for (auto& v : m.s) v = static_cast<uint8_t>(sc(rng));
  return m;
}

float mx_weight(const MxWeights& m, bool fp8, int64_t k_all, int64_t n, int64_t k) {
  const uint8_t s = m.s[n * (k_all / 32) + k / 32];
  if (fp8) return mx_decode(MxElem::kE4M3, m.w[n * k_all + k], s);
  const uint8_t b = m.w[n * (k_all / 2) + k / 2];
  return mx_decode(MxElem::kE2M1, (k & 1) ? b >> 4 : b & 0xF, s);
}

TEST(QuantLinearKernels, MxGemmsMatchReference) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  for (Shape3 s : kShapes)
    for (int kind = 0; kind < 3; ++kind) {  // 0: f32 x mxfp8, 1: f32 x mxfp4, 2: mxfp4 x mxfp4
      const bool fp8 = kind == 0;
      MxWeights m = random_mx(rng, fp8, s.n, s.k);
      std::vector<float> x(s.t * s.k);
      for (auto& v : x) v = nd(rng);
      std::vector<int8_t> x2(s.t * s.k);
      std::vector<uint8_t> xs(s.t * s.k / 32), codes(s.k);
      for (int64_t t = 0; t < s.t; ++t) {
        mx_quantize_row(MxElem::kE2M1, x.data() + t * s.k, s.k, codes.data(), xs.data() + t * (s.k / 32));
        for (int64_t i = 0; i < s.k; ++i) x2[t * s.k + i] = kE2m1Times2[codes[i]];
      }
      auto run = [&](const QuantLinearKernels& kt, std::vector<float>& y) {
        y.assign(s.t * s.n, 0.0f);
        GemmMxArgs a{x.data(), x2.data(), xs.data(), s.t, s.k, m.w.data(), m.s.data(), 0, s.n, y.data(), s.n};
        (kind == 0 ? kt.gemm_f32_mxfp8 : kind == 1 ? kt.gemm_f32_mxfp4 : kt.gemm_mxfp4_mxfp4)(a);
      };
      std::vector<float> ref;
      run(quant_linear_reference_table(), ref);
      for (int64_t t = 0; t < s.t; ++t)
        for (int64_t n = 0; n < s.n; ++n) {
          // The reference against the formula in double.
          double want = 0, abs = 0;
          for (int64_t i = 0; i < s.k; ++i) {
            const double a = kind == 2 ? std::ldexp(x2[t * s.k + i] / 2.0, xs[t * (s.k / 32) + i / 32] - 127)
                                       : double{x[t * s.k + i]};
            const double p = a * mx_weight(m, fp8, s.k, n, i);
            want += p;
            abs += std::fabs(p);
          }
          ASSERT_NEAR(ref[t * s.n + n], want, sum_tolerance(s.k, abs)) << "kind " << kind;
        }
      for (Isa isa : host_isas()) {
        std::vector<float> got;
        run(quant_linear_kernels_for(isa), got);
        for (int64_t t = 0; t < s.t; ++t)
          for (int64_t n = 0; n < s.n; ++n) {
            double abs = 0;
            for (int64_t i = 0; i < s.k; ++i)
              abs += std::fabs((kind == 2 ? std::ldexp(x2[t * s.k + i] / 2.0, xs[t * (s.k / 32) + i / 32] - 127)
                                          : double{x[t * s.k + i]}) *
                               mx_weight(m, fp8, s.k, n, i));
            EXPECT_NEAR(got[t * s.n + n], ref[t * s.n + n], sum_tolerance(s.k, abs))
                << isa_name(isa) << " kind " << kind << " t=" << t << " n=" << n;
          }
      }
    }
}

}  // namespace
}  // namespace quanta::kernels

namespace quanta::quant {
namespace {

using kernels::Isa;

constexpr double kEps = std::numeric_limits<float>::epsilon();

Tensor int8_tensor(const std::vector<int8_t>& v, int64_t n, int64_t k) {
  Tensor t = Tensor::zeros(DType::kI8, {n, k});
  std::copy(v.begin(), v.end(), t.data_mut<int8_t>());
  return t;
}

// W8A8_DYNAMIC / W4A4_DYNAMIC / W8A16 layers, per channel and per group, against
// the spec formula in double: y = s_t * sum_g scale[n,g] * sum_k x_q W + bias.
TEST(QuantizedLinear, IntSchemesMatchTheSpecFormula) {
  ThreadPool pool(2);
  std::mt19937 rng(4);
  std::normal_distribution<float> nd;
  const int64_t N = 21, K = 128;
  for (int64_t T : {3, 50})
  for (Scheme scheme : {Scheme::kW8A8Dynamic, Scheme::kW4A4Dynamic, Scheme::kW8A16})
    for (int64_t G : {K, int64_t{32}}) {
      const int qmax_w = scheme == Scheme::kW4A4Dynamic ? 7 : 127;
      std::uniform_int_distribution<int> wd(-qmax_w - 1, qmax_w);
      std::vector<int8_t> w(N * K);
      for (auto& v : w) v = static_cast<int8_t>(wd(rng));
      std::vector<float> scale(N * (K / G)), bias(N), x(T * K);
      for (auto& v : scale) v = std::fabs(nd(rng)) * 0.01f + 1e-3f;
      for (auto& v : bias) v = nd(rng);
      for (auto& v : x) v = nd(rng);
      x[5] = 0;  // a zero among the activations
      for (Isa isa : {Isa::kScalar, kernels::host_isa()}) {
        IntLinearWeights lw;
        lw.scheme = scheme;
        lw.weight = int8_tensor(w, N, K);
        lw.scale = scale;
        lw.group_size = G;
        lw.bias = bias;
        auto layer = make_int_linear(lw, kernels::quant_linear_kernels_for(isa));
        std::vector<float> y(T * N);
        layer->forward(x.data(), T, y.data(), pool);
        for (int64_t t = 0; t < T; ++t) {
          // The spec's activation quantization, written out (sec. 1.5).
          const int qa = scheme == Scheme::kW4A4Dynamic ? 7 : 127;
          float amax = 0;
          for (int64_t k = 0; k < K; ++k) amax = std::max(amax, std::fabs(x[t * K + k]));
          const float s = amax / static_cast<float>(qa);
          for (int64_t n = 0; n < N; ++n) {
            double want = bias[n], abs = std::fabs(bias[n]);
            for (int64_t k = 0; k < K; ++k) {
              const double a = scheme == Scheme::kW8A16 ? double{x[t * K + k]}
                                                        : std::nearbyint(x[t * K + k] / s) * double{s};
              const double p = a * w[n * K + k] * scale[n * (K / G) + k / G];
              want += p;
              abs += std::fabs(p);
            }
            EXPECT_NEAR(y[t * N + n], want, 8 * kEps * abs + (scheme == Scheme::kW8A16 ? K * kEps * abs : 0))
                << scheme_name(scheme) << " G=" << G << " " << kernels::isa_name(isa);
          }
        }
      }
    }
}

// compressed-tensors' W8A8: s_t = amax / 127.5 and x_q in [-128, 127], so the most
// negative activation of a token becomes -128 (run as -127 plus a correction).
TEST(QuantizedLinear, FullRangeDynamicW8A8MatchesCompressedTensorsRule) {
  ThreadPool pool(2);
  std::mt19937 rng(6);
  std::normal_distribution<float> nd;
  std::uniform_int_distribution<int> wd(-128, 127);
  const int64_t N = 23, K = 128;
  for (int64_t T : {3, 40})
    for (int64_t G : {K, int64_t{64}}) {
      std::vector<int8_t> w(N * K);
      for (auto& v : w) v = static_cast<int8_t>(wd(rng));
      std::vector<float> scale(N * (K / G)), x(T * K);
      for (auto& v : scale) v = std::fabs(nd(rng)) * 0.01f + 1e-3f;
      for (auto& v : x) v = nd(rng);
      for (int64_t t = 0; t < T; ++t) x[t * K + 7] = -50.0f;  // the token's largest magnitude, negative
      for (Isa isa : {Isa::kScalar, kernels::host_isa()}) {
        IntLinearWeights lw;
        lw.scheme = Scheme::kW8A8Dynamic;
        lw.weight = int8_tensor(w, N, K);
        lw.scale = scale;
        lw.group_size = G;
        lw.act_full_range = true;
        auto layer = make_int_linear(lw, kernels::quant_linear_kernels_for(isa));
        std::vector<float> y(T * N);
        layer->forward(x.data(), T, y.data(), pool);
        for (int64_t t = 0; t < T; ++t) {
          const float s = 50.0f / 127.5f;
          ASSERT_EQ(std::clamp(std::nearbyint(x[t * K + 7] / s), -128.0f, 127.0f), -128.0f);
          for (int64_t n = 0; n < N; ++n) {
            double want = 0, abs = 0;
            for (int64_t k = 0; k < K; ++k) {
              const double q = std::clamp(std::nearbyint(x[t * K + k] / s), -128.0f, 127.0f);
              const double p = q * s * w[n * K + k] * scale[n * (K / G) + k / G];
              want += p;
              abs += std::fabs(p);
            }
            EXPECT_NEAR(y[t * N + n], want, 8 * kEps * abs) << "G=" << G << " T=" << T << " " << kernels::isa_name(isa);
          }
        }
      }
    }
}

// Static W8A8 with an input offset that drives activations to the -128 saturation
// (the AVX2 path runs -128 as -127 plus a correction): the spec's integer formula exactly.
TEST(QuantizedLinear, StaticW8A8MatchesTheSpecFormula) {
  ThreadPool pool(2);
  std::mt19937 rng(5);
  std::normal_distribution<float> nd;
  std::uniform_int_distribution<int> wd(-128, 127), qb(-5000, 5000);
  const int64_t T = 40, N = 19, K = 96;  // enough tokens for the AMX tiles too
  std::vector<int8_t> w(N * K);
  for (auto& v : w) v = static_cast<int8_t>(wd(rng));
  std::vector<float> x(T * K), deq(N);
  std::vector<int32_t> qbias(N);
  for (auto& v : x) v = nd(rng) * 2.0f;
  for (auto& v : deq) v = std::fabs(nd(rng)) * 1e-4f;
  for (auto& v : qbias) v = qb(rng);
  const float in_scale = 0.02f, in_off = -60.0f;
  int saturated = 0;
  for (Isa isa : {Isa::kScalar, kernels::host_isa()}) {
    IntLinearWeights lw;
    lw.scheme = Scheme::kW8A8;
    lw.weight = int8_tensor(w, N, K);
    lw.input_scale = in_scale;
    lw.input_offset = in_off;
    lw.quant_bias = qbias;
    lw.deq_scale = deq;
    auto layer = make_int_linear(lw, kernels::quant_linear_kernels_for(isa));
    std::vector<float> y(T * N);
    layer->forward(x.data(), T, y.data(), pool);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t n = 0; n < N; ++n) {
        int64_t acc = qbias[n];
        for (int64_t k = 0; k < K; ++k) {
          const float q = std::clamp(std::nearbyint(x[t * K + k] / in_scale + in_off), -128.0f, 127.0f);
          saturated += q == -128.0f;
          acc += static_cast<int64_t>(q) * w[n * K + k];
        }
        const double want = static_cast<double>(acc) * deq[n];
        EXPECT_NEAR(y[t * N + n], want, 2 * kEps * std::fabs(want)) << kernels::isa_name(isa);
      }
  }
  EXPECT_GT(saturated, 0);  // the test really exercised -128
}

TEST(QuantizedLinear, MxSchemesMatchTheSpecFormula) {
  ThreadPool pool(2);
  std::mt19937 rng(6);
  std::normal_distribution<float> nd;
  const int64_t N = 37, K = 128, NB = K / 32;
  // 3 tokens take the block kernels, 50 the prefill path (rows decoded for the float matmul).
  for (int64_t T : {3, 50})
  for (Scheme scheme : {Scheme::kW8A8Mxfp8, Scheme::kW4A8Mxfp, Scheme::kW4A4Mxfp4}) {
    const bool fp8 = scheme == Scheme::kW8A8Mxfp8;
    // Weights from real values through the MX encoder (sec. 1.6.9/1.6.10 layouts).
    std::vector<float> wf(N * K), x(T * K), bias(N);
    for (auto& v : wf) v = nd(rng) * 0.05f;
    for (auto& v : x) v = nd(rng);
    for (auto& v : bias) v = nd(rng);
    std::vector<uint8_t> codes(N * K), scales(N * NB), packed(N * K / 2);
    for (int64_t n = 0; n < N; ++n)
      mx_quantize_row(fp8 ? MxElem::kE4M3 : MxElem::kE2M1, wf.data() + n * K, K, codes.data() + n * K,
                      scales.data() + n * NB);
    mx_pack_e2m1(codes.data(), N * K, packed.data());
    for (Isa isa : {Isa::kScalar, kernels::host_isa()}) {
      MxLinearWeights lw;
      lw.scheme = scheme;
      lw.weight = Tensor::zeros(DType::kU8, {N, fp8 ? K : K / 2});
      std::copy_n(fp8 ? codes.data() : packed.data(), lw.weight.numel(), lw.weight.data_mut<uint8_t>());
      lw.scale = Tensor::zeros(DType::kU8, {N, NB});
      std::copy(scales.begin(), scales.end(), lw.scale.data_mut<uint8_t>());
      lw.bias = bias;
      auto layer = make_mx_linear(lw, kernels::quant_linear_kernels_for(isa));
      std::vector<float> y(T * N);
      layer->forward(x.data(), T, y.data(), pool);
      for (int64_t t = 0; t < T; ++t) {
        std::vector<float> xa(K);
        mx_fake_quantize_row(scheme == Scheme::kW4A4Mxfp4 ? MxElem::kE2M1 : MxElem::kE4M3, x.data() + t * K, K,
                             xa.data());
        for (int64_t n = 0; n < N; ++n) {
          double want = bias[n], abs = std::fabs(bias[n]);
          for (int64_t k = 0; k < K; ++k) {
            const double p = double{xa[k]} * mx_decode(fp8 ? MxElem::kE4M3 : MxElem::kE2M1, codes[n * K + k],
                                                       scales[n * NB + k / 32]);
            want += p;
            abs += std::fabs(p);
          }
          EXPECT_NEAR(y[t * N + n], want, 2 * (K + 4) * kEps * abs) << scheme_name(scheme) << " "
                                                                    << kernels::isa_name(isa);
        }
      }
    }
  }
}

}  // namespace
}  // namespace quanta::quant

namespace quanta::kernels {
namespace {

// The MX row decoder of the tile path: every ISA's equals the scalar one bit for bit
// (both are exact: a code's value times a power of two), over every code and scale.
TEST(QuantLinearKernels, DequantMxRowIsExactOnEveryIsa) {
  std::mt19937 rng(9);
  const int64_t K = 512;
  std::vector<uint8_t> e4m3(K), e2m1(K / 2), scales(K / 32);
  // Every finite code; the NaN codes 0x7F / 0xFF (no quantizer writes them) widen to
  // finite values in the F16C trick, as in gemm_f32_mxfp8.
  for (int64_t i = 0; i < K; ++i) e4m3[i] = static_cast<uint8_t>((i & 0x7F) == 0x7F ? i - 1 : i) & 0xFF;
  for (auto& v : e2m1) v = static_cast<uint8_t>(rng());
  for (int64_t b = 0; b < K / 32; ++b) scales[b] = static_cast<uint8_t>(b == 0 ? 0 : b == 1 ? 254 : 100 + b * 3);
  for (bool is_e4m3 : {true, false})
    for (auto [k0, len] : {std::pair<int64_t, int64_t>{0, K}, {256, 128}, {32, 32}}) {
      std::vector<float> want(len), got(len);
      quant_linear_reference_table().dequant_mx_row(is_e4m3, is_e4m3 ? e4m3.data() : e2m1.data(), scales.data(), k0,
                                                    len, want.data());
      for (Isa isa : host_isas()) {
        quant_linear_kernels_for(isa).dequant_mx_row(is_e4m3, is_e4m3 ? e4m3.data() : e2m1.data(), scales.data(), k0,
                                                     len, got.data());
        for (int64_t i = 0; i < len; ++i)
          ASSERT_EQ(got[i], want[i]) << isa_name(isa) << (is_e4m3 ? " e4m3" : " e2m1") << " k=" << k0 + i;
      }
    }
}

}  // namespace
}  // namespace quanta::kernels
