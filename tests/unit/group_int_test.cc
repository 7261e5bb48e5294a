// Group-wise integer Linear (quant/group_int_linear.h) on every ISA the host runs,
// against a double-precision evaluation of W[n,k] = s[n,g] * (q[n,k] - z[n,g]):
// prompts on tiers without an integer GEMM (f32 activations) within f32
// summation error; decoding and integer-GEMM prompts (16-bit activations per
// group_int_act_block) within the bound that rounding each activation to
// max|x_block| / 32767 steps allows.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "quanta/core/error.h"
#include "quanta/core/thread_pool.h"
#include "quanta/kernels/group_int.h"
#include "quanta/quant/group_int_linear.h"

namespace quanta::quant {
namespace {

using kernels::Isa;

std::vector<Isa> host_isas() {
  std::vector<Isa> out;
  for (int i = 0; i <= static_cast<int>(kernels::host_isa()); ++i) out.push_back(static_cast<Isa>(i));
  return out;
}

GroupIntWeights random_weights(int64_t n_out, int64_t n_in, int bits, int64_t group, std::mt19937& rng) {
  GroupIntWeights w;
  w.n_out = n_out;
  w.n_in = n_in;
  w.bits = bits;
  w.group_size = group;
  const int64_t n_groups = n_in / group;
  std::uniform_int_distribution<int> code(0, (1 << bits) - 1);
  std::uniform_real_distribution<float> scale(0.001f, 0.05f);
  w.q.resize(n_out * n_in);
  for (auto& v : w.q) v = static_cast<uint8_t>(code(rng));
  w.q[0] = static_cast<uint8_t>((1 << bits) - 1);  // the largest code
  for (int64_t i = 0; i < n_out * n_groups; ++i) {
    // Scales are f16 values in checkpoints (bf16 or f32 in some): s * z is exact in f32.
    w.scale.push_back(static_cast<float>(static_cast<_Float16>(scale(rng))));
    w.zero.push_back(code(rng));
  }
  for (int64_t n = 0; n < n_out; ++n) w.bias.push_back(0.01f * static_cast<float>(n % 7));
  return w;
}

double weight_at(const GroupIntWeights& w, int64_t n, int64_t k) {
  const int64_t n_groups = w.n_in / w.group_size;
  const int64_t g = w.g_idx.empty() ? k / w.group_size : w.g_idx[k];
  return double{w.scale[n * n_groups + g]} * (int{w.q[n * w.n_in + k]} - w.zero[n * n_groups + g]);
}

// Checks y against the double-precision product; with the error of 16-bit
// activations in blocks of q16 elements unless q16 is 0.
void expect_close(const GroupIntWeights& w, const std::vector<float>& x, int64_t T, const std::vector<float>& y,
                  int64_t q16, const std::string& what) {
  const double eps = std::numeric_limits<float>::epsilon();
  const int64_t blk = q16 ? q16 : 32;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t n = 0; n < w.n_out; ++n) {
      double want = w.bias[n], abs_sum = std::fabs(w.bias[n]), q_err = 0.0;
      for (int64_t b = 0; b * blk < w.n_in; ++b) {
        const int64_t end = std::min(w.n_in, blk * b + blk);
        double amax = 0.0;
        for (int64_t k = blk * b; k < end; ++k) amax = std::max(amax, double{std::fabs(x[t * w.n_in + k])});
        for (int64_t k = blk * b; k < end; ++k) {
          const double wk = weight_at(w, n, k);
          want += wk * x[t * w.n_in + k];
          abs_sum += std::fabs(wk * x[t * w.n_in + k]);
          q_err += std::fabs(wk) * amax / 32767.0 * 0.5;
        }
      }
      const double tol = (w.n_in + 8) * eps * abs_sum * 2 + (q16 ? q_err * 1.01 + 4 * eps * abs_sum : 0.0) + 1e-6;
      ASSERT_NEAR(y[t * w.n_out + n], want, tol) << what << " t=" << t << " n=" << n;
    }
}

TEST(GroupIntLinear, MatchesTheFormulaOnEveryIsaBitWidthAndGroup) {
  std::mt19937 rng(7);
  ThreadPool pool(2);
  for (int bits : {2, 3, 4, 5, 8})
    for (int64_t group : {32, 64, 128, 256}) {
      const int64_t K = 256, N = 37;
      const GroupIntWeights w = random_weights(N, K, bits, group, rng);
      for (int64_t T : {1, 3, 4, 5, 20, 23}) {
        std::normal_distribution<float> xd(0.0f, 1.0f);
        std::vector<float> x(T * K);
        for (auto& v : x) v = xd(rng);
        for (Isa isa : host_isas()) {
          auto lin = make_group_int_linear(w, "test.g_idx", kernels::group_int_kernels_for(isa));
          std::vector<float> y(T * N, NAN);
          lin->forward(x.data(), T, y.data(), pool);
          const auto& kt = kernels::group_int_kernels_for(isa);
          const int64_t q16 = isa != Isa::kScalar && (T < 16 || kt.gemm) ? kernels::group_int_act_block(group) : 0;
          expect_close(w, x, T, y, q16,
                       std::string(kernels::isa_name(isa)) + " bits=" + std::to_string(bits) +
                           " group=" + std::to_string(group) + " T=" + std::to_string(T));
        }
      }
    }
}

// Rows longer than the integer GEMM's 1024-input chunks, a partial chunk, per-channel
// scales (one group per row) and the 8-bit container; rows not a multiple of a panel.
TEST(GroupIntLinear, LongRowsAndPerChannelGroupsOnEveryIsa) {
  std::mt19937 rng(17);
  ThreadPool pool(2);
  const int64_t K = 1536, N = 45, T = 17;
  for (int bits : {4, 8})
    for (int64_t group : {int64_t{128}, K}) {
      const GroupIntWeights w = random_weights(N, K, bits, group, rng);
      std::normal_distribution<float> xd(0.0f, 1.0f);
      std::vector<float> x(T * K);
      for (auto& v : x) v = xd(rng);
      for (Isa isa : host_isas()) {
        const auto& kt = kernels::group_int_kernels_for(isa);
        auto lin = make_group_int_linear(w, "test.g_idx", kt);
        std::vector<float> y(T * N, NAN);
        lin->forward(x.data(), T, y.data(), pool);
        expect_close(w, x, T, y, isa != Isa::kScalar && kt.gemm ? kernels::group_int_act_block(group) : 0,
                     std::string(kernels::isa_name(isa)) + " bits=" + std::to_string(bits) +
                         " group=" + std::to_string(group));
      }
    }
}

// W4A8 (compressed-tensors): activations x_q = round(x / s_t), s_t = amax / 127.5,
// clamped to [-128, 127]; the layer then computes exactly sum_k W x_q s_t.
TEST(GroupIntLinear, Int8ActivationsFollowTheCompressedTensorsRule) {
  std::mt19937 rng(13);
  ThreadPool pool(2);
  const int64_t K = 128, N = 19;
  GroupIntWeights w = random_weights(N, K, 4, 32, rng);
  w.act_int8 = true;
  for (int64_t T : {1, 3, 20}) {
    std::normal_distribution<float> xd(0.0f, 1.0f);
    std::vector<float> x(T * K), xa(T * K);
    for (auto& v : x) v = xd(rng);
    for (int64_t t = 0; t < T; ++t) {
      x[t * K + 1] = -9.0f;  // the largest magnitude, negative: quantizes to -128
      const float s = 9.0f / 127.5f;
      for (int64_t k = 0; k < K; ++k) xa[t * K + k] = std::clamp(std::nearbyint(x[t * K + k] / s), -128.0f, 127.0f) * s;
    }
    for (Isa isa : host_isas()) {
      auto lin = make_group_int_linear(w, "test.g_idx", kernels::group_int_kernels_for(isa));
      std::vector<float> y(T * N);
      lin->forward(x.data(), T, y.data(), pool);
      expect_close(w, xa, T, y, 0, std::string("W4A8 ") + kernels::isa_name(isa) + " T=" + std::to_string(T));
    }
  }
}

TEST(GroupIntLinear, ActOrderGroupsArePermutedOnceAndRowsDequantizeInCheckpointOrder) {
  std::mt19937 rng(11);
  ThreadPool pool(2);
  const int64_t K = 128, N = 16, G = 32;
  GroupIntWeights w = random_weights(N, K, 4, G, rng);
  // As GPTQ's act-order writes it: g_idx[k] = position of k in a permutation / G.
  std::vector<int32_t> order(K);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  w.g_idx.resize(K);
  for (int64_t i = 0; i < K; ++i) w.g_idx[order[i]] = static_cast<int32_t>(i / G);
  for (Isa isa : host_isas())
    for (int64_t T : {2, 17}) {
      std::vector<float> x(T * K);
      std::normal_distribution<float> xd(0.0f, 1.0f);
      for (auto& v : x) v = xd(rng);
      auto lin = make_group_int_linear(w, "test.g_idx", kernels::group_int_kernels_for(isa));
      std::vector<float> y(T * N);
      lin->forward(x.data(), T, y.data(), pool);
      // Blocks hold permuted columns: bounded by the whole row's largest activation.
      const bool q16 = isa != Isa::kScalar && (T < 16 || kernels::group_int_kernels_for(isa).gemm);
      expect_close(w, x, T, y, q16 ? K : 0, std::string("act-order ") + kernels::isa_name(isa));
      std::vector<float> row(K);
      lin->dequantize_row(3, row.data());
      for (int64_t k = 0; k < K; ++k) ASSERT_FLOAT_EQ(row[k], static_cast<float>(weight_at(w, 3, k))) << k;
    }
}

TEST(GroupIntLinear, GroupsThatAreNotWhole32BlocksAreDecodedToFloat) {
  std::mt19937 rng(3);
  ThreadPool pool(1);
  const GroupIntWeights w = random_weights(8, 48, 4, 16, rng);
  std::vector<float> x(2 * 48, 0.5f), y(2 * 8);
  auto lin = make_group_int_linear(w, "test.g_idx");
  lin->forward(x.data(), 2, y.data(), pool);
  expect_close(w, x, 2, y, 0, "group 16");
}

TEST(GroupIntLinear, RejectsAGIdxThatIsNotAPermutationOfGroups) {
  std::mt19937 rng(5);
  GroupIntWeights w = random_weights(4, 64, 4, 32, rng);
  w.g_idx.assign(64, 0);  // every column in group 0
  try {
    make_group_int_linear(w, "model.layers.0.mlp.up_proj.g_idx");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.context().tensor, "model.layers.0.mlp.up_proj.g_idx");
    EXPECT_NE(std::string(e.what()).find("not a permutation of groups"), std::string::npos) << e.what();
  }
  w.g_idx.assign(64, 0);
  w.g_idx[5] = 9;
  EXPECT_THROW(make_group_int_linear(w, "x.g_idx"), Error);
}

}  // namespace
}  // namespace quanta::quant
