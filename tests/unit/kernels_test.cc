// Every fast kernel against its reference, on every ISA path this CPU runs,
// over random shapes with odd tails.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "quanta/core/dtype.h"
#include "quanta/core/thread_pool.h"
#include "quanta/kernels/kernels.h"
#include "quanta/kernels/ops.h"

namespace quanta::kernels {
namespace {

std::vector<Isa> host_isas() {
  std::vector<Isa> out;
  for (int i = 0; i <= static_cast<int>(host_isa()); ++i) out.push_back(static_cast<Isa>(i));
  return out;
}

std::vector<float> random_vector(std::mt19937& rng, size_t n, float scale = 1.0f) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// Error bound of a length-k f32 dot product in any summation order (Higham):
// |computed - exact| <= gamma_k * sum |x_i w_i|, gamma_k = k u / (1 - k u). Two
// such results differ by at most twice that.
float dot_tolerance(int64_t k, double abs_sum) {
  double u = std::numeric_limits<float>::epsilon() / 2;
  double gamma = k * u / (1 - k * u);
  return static_cast<float>(2 * gamma * abs_sum) + 1e-30f;
}

// kExactBf16: f32 weights and activations whose values are bf16 values (matmul_bf16_exact).
enum class WType { kF32, kBF16, kF16, kExactBf16 };

void check_matmul(Isa isa, WType wt, int64_t n_tokens, int64_t n_in, int64_t n_out, std::mt19937& rng) {
  std::vector<float> x = random_vector(rng, static_cast<size_t>(n_tokens * n_in));
  std::vector<float> wf = random_vector(rng, static_cast<size_t>(n_out * n_in));
  std::vector<uint16_t> w16(wf.size());
  const void* w = wf.data();
  MatmulFn fast = kernels_for(isa).matmul_f32, ref = reference_table().matmul_f32;
  if (wt == WType::kBF16) {
    for (size_t i = 0; i < wf.size(); ++i) w16[i] = f32_to_bf16(wf[i]), wf[i] = bf16_to_f32(w16[i]);
    w = w16.data();
    fast = kernels_for(isa).matmul_bf16;
    ref = reference_table().matmul_bf16;
  } else if (wt == WType::kExactBf16) {
    for (float& v : wf) v = bf16_to_f32(f32_to_bf16(v));
    for (float& v : x) v = bf16_to_f32(f32_to_bf16(v));
    fast = kernels_for(isa).matmul_bf16_exact;
  } else if (wt == WType::kF16) {
    for (size_t i = 0; i < wf.size(); ++i) w16[i] = f32_to_f16(wf[i]), wf[i] = f16_to_f32(w16[i]);
    w = w16.data();
    fast = kernels_for(isa).matmul_f16;
    ref = reference_table().matmul_f16;
  }
  // Leave a column margin (ldy > n_out) and a row sub-range to check both are honoured.
  const int64_t ldy = n_out + 3;
  const int64_t o_begin = n_out > 5 ? 1 : 0, o_end = n_out;
  std::vector<float> y_fast(static_cast<size_t>(n_tokens * ldy), -7.0f), y_ref = y_fast;
  fast({x.data(), n_tokens, n_in, w, y_fast.data(), ldy, o_begin, o_end});
  ref({x.data(), n_tokens, n_in, w, y_ref.data(), ldy, o_begin, o_end});
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t o = 0; o < ldy; ++o) {
      size_t i = static_cast<size_t>(t * ldy + o);
      if (o < o_begin || o >= o_end) {
        ASSERT_EQ(y_fast[i], -7.0f) << "wrote outside its rows at t=" << t << " o=" << o;
        continue;
      }
      double abs_sum = 0;
      for (int64_t k = 0; k < n_in; ++k)
        abs_sum += std::fabs(static_cast<double>(x[static_cast<size_t>(t * n_in + k)]) * wf[static_cast<size_t>(o * n_in + k)]);
      ASSERT_NEAR(y_fast[i], y_ref[i], dot_tolerance(n_in, abs_sum))
          << isa_name(isa) << " T=" << n_tokens << " K=" << n_in << " N=" << n_out << " at t=" << t << " o=" << o;
    }
  }
}

TEST(Kernels, MatmulMatchesReferenceOnEveryIsa) {
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int64_t> tokens(1, 70), in_dim(1, 300), out_dim(1, 37);
  for (Isa isa : host_isas()) {
    for (WType wt : {WType::kF32, WType::kBF16, WType::kF16, WType::kExactBf16}) {
      for (int rep = 0; rep < 12; ++rep) check_matmul(isa, wt, tokens(rng), in_dim(rng), out_dim(rng), rng);
      check_matmul(isa, wt, 1, 1024, 19, rng);  // decode shape
      check_matmul(isa, wt, 97, 64, 8, rng);     // several token blocks
    }
  }
}

TEST(Kernels, DotAndAxpyMatchReference) {
  std::mt19937 rng(5);
  for (Isa isa : host_isas()) {
    const KernelTable& kt = kernels_for(isa);
    for (int64_t n : {1, 7, 8, 9, 15, 16, 17, 31, 64, 129, 1000}) {
      auto a = random_vector(rng, static_cast<size_t>(n)), b = random_vector(rng, static_cast<size_t>(n));
      double abs_sum = 0;
      for (int64_t i = 0; i < n; ++i) abs_sum += std::fabs(a[static_cast<size_t>(i)] * b[static_cast<size_t>(i)]);
      EXPECT_NEAR(kt.dot_f32(a.data(), b.data(), n), reference_table().dot_f32(a.data(), b.data(), n),
                  dot_tolerance(n, abs_sum)) << isa_name(isa) << " n=" << n;
      auto y1 = random_vector(rng, static_cast<size_t>(n)), y2 = y1;
      kt.axpy_f32(0.37f, a.data(), y1.data(), n);
      reference_table().axpy_f32(0.37f, a.data(), y2.data(), n);
      for (int64_t i = 0; i < n; ++i)  // one fused vs two rounded operations: within 1 ulp of the sum's scale
        EXPECT_NEAR(y1[static_cast<size_t>(i)], y2[static_cast<size_t>(i)],
                    4 * std::numeric_limits<float>::epsilon() * (std::fabs(y2[static_cast<size_t>(i)]) + std::fabs(0.37f * a[static_cast<size_t>(i)])));
    }
  }
}

TEST(Kernels, GatedActivationsMatchReference) {
  // Fast forms use x * sigmoid(z) with a polynomial e^x (about 2 ulp) where the
  // reference uses std::exp / std::tanh: both within a few ulp of act(x) * up.
  // Inputs cover the tails where e^-z overflows or underflows, NaN and +-inf.
  std::mt19937 rng(11);
  std::vector<float> gate = random_vector(rng, 1003, 4.0f), up = random_vector(rng, 1003);
  for (float v : {0.0f, -0.0f, 1e-30f, -1e-30f, 30.0f, -30.0f, 88.5f, -88.5f, 200.0f, -200.0f, 1e30f, -1e30f})
    gate.push_back(v), up.push_back(1.5f);
  gate.push_back(std::numeric_limits<float>::infinity()), up.push_back(2.0f);
  gate.push_back(std::numeric_limits<float>::quiet_NaN()), up.push_back(2.0f);
  const int64_t n = static_cast<int64_t>(gate.size());
  for (Isa isa : host_isas()) {
    const KernelTable& kt = kernels_for(isa);
    for (bool gelu : {false, true}) {
      std::vector<float> got(gate.size()), want(gate.size());
      (gelu ? kt.gelu_tanh_mul : kt.silu_mul)(gate.data(), up.data(), got.data(), n);
      (gelu ? reference_table().gelu_tanh_mul : reference_table().silu_mul)(gate.data(), up.data(), want.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        const float g = gate[static_cast<size_t>(i)], w = want[static_cast<size_t>(i)];
        if (std::isnan(g)) {
          EXPECT_TRUE(std::isnan(got[static_cast<size_t>(i)])) << isa_name(isa);
          continue;
        }
        if (std::isinf(w)) {
          EXPECT_EQ(got[static_cast<size_t>(i)], w) << isa_name(isa) << " x=" << g;
          continue;
        }
        const float tol = 8 * std::numeric_limits<float>::epsilon() * std::fabs(g * up[static_cast<size_t>(i)]) + 1e-37f;
        EXPECT_NEAR(got[static_cast<size_t>(i)], w, tol) << isa_name(isa) << (gelu ? " gelu" : " silu") << " x=" << g;
      }
      // In place (out == gate), as the decoder calls it.
      std::vector<float> in_place = gate;
      (gelu ? kt.gelu_tanh_mul : kt.silu_mul)(in_place.data(), up.data(), in_place.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        if (!std::isnan(gate[static_cast<size_t>(i)])) {
          EXPECT_EQ(in_place[static_cast<size_t>(i)], got[static_cast<size_t>(i)]);
        }
      }
    }
  }
}

TEST(Kernels, AttentionMatchesReferenceOnEveryIsa) {
  std::mt19937 rng(99);
  ThreadPool pool(2);
  struct Case { int n_heads, n_kv_heads, d_head; float softcap; int window; bool causal; int64_t n_past, n_tokens; bool sinks = false; };
  const Case cases[] = {
      {4, 2, 16, 0.0f, 0, true, 0, 13},   // prefill with GQA
      {4, 4, 8, 0.0f, 0, true, 20, 1},    // decode
      {6, 2, 12, 50.0f, 5, true, 3, 9},   // softcap + sliding window
      {2, 1, 20, 0.0f, 4, true, 30, 1},   // decode inside a window
      {3, 3, 6, 0.0f, 0, false, 0, 7},    // bidirectional
      {4, 2, 16, 0.0f, 3, true, 5, 6, true},  // gpt-oss: sinks in the softmax, sliding window
  };
  const int64_t block_size = 4;
  for (Isa isa : host_isas()) {
    // Two sequences per call, each with a shuffled block table in a shared pool.
    for (const Case& c : cases) {
      const int64_t n_kv = c.n_past + c.n_tokens;
      const int64_t n_blocks_seq = (n_kv + block_size - 1) / block_size;
      const int64_t n_blocks = 2 * n_blocks_seq + 3;
      auto kc = random_vector(rng, static_cast<size_t>(n_blocks * c.n_kv_heads * block_size * c.d_head));
      auto vc = random_vector(rng, static_cast<size_t>(n_blocks * c.n_kv_heads * block_size * c.d_head));
      std::vector<int32_t> perm(static_cast<size_t>(n_blocks));
      for (int32_t i = 0; i < n_blocks; ++i) perm[static_cast<size_t>(i)] = i;
      std::shuffle(perm.begin(), perm.end(), rng);
      const int64_t stride = c.n_heads * c.d_head;
      AttentionShape s{c.n_heads, c.n_kv_heads, c.d_head, 1.0f / std::sqrt(static_cast<float>(c.d_head)),
                       c.softcap, c.window, c.causal};
      std::vector<float> sinks = random_vector(rng, static_cast<size_t>(c.n_heads));
      for (float& v : sinks) v *= 3.0f;  // loud enough to take a good share of each softmax
      if (c.sinks) s.sinks = sinks.data();
      KvLayout layout{kc.data(), vc.data(), block_size, stride, stride};
      // Two sequences: different block tables (disjoint halves of perm), different queries.
      std::vector<std::vector<float>> qs, outs, expects;
      std::vector<std::vector<int64_t>> poss;
      std::vector<AttentionSeq> seqs;
      for (int si = 0; si < 2; ++si) {
        qs.push_back(random_vector(rng, static_cast<size_t>(c.n_tokens * stride)));
        outs.emplace_back(qs.back().size());
        expects.emplace_back(qs.back().size());
        poss.emplace_back();
        for (int64_t t = 0; t < c.n_tokens; ++t) poss.back().push_back(c.n_past + t);
      }
      for (int si = 0; si < 2; ++si)
        seqs.push_back({qs[static_cast<size_t>(si)].data(), outs[static_cast<size_t>(si)].data(), c.n_tokens,
                        poss[static_cast<size_t>(si)].data(), perm.data() + si * n_blocks_seq, n_kv});
      attention(kernels_for(isa), s, layout, seqs.data(), seqs.size(), &pool);
      for (int si = 0; si < 2; ++si) {
        AttentionSeq ref = seqs[static_cast<size_t>(si)];
        ref.out = expects[static_cast<size_t>(si)].data();
        attention_reference(s, layout, ref);
        for (size_t i = 0; i < outs[static_cast<size_t>(si)].size(); ++i)
          ASSERT_NEAR(outs[static_cast<size_t>(si)][i], expects[static_cast<size_t>(si)][i],
                      1e-5f * (1 + std::fabs(expects[static_cast<size_t>(si)][i])))
              << isa_name(isa) << " seq " << si << " at " << i;
      }
    }
  }
}

TEST(Kernels, RmsNormBothForms) {
  std::vector<float> x = {1, -2, 3, -4}, w = {0.5f, 1, 2, 0};
  std::vector<float> y(4);
  float inv = 1.0f / std::sqrt((1 + 4 + 9 + 16) / 4.0f + 1e-6f);
  rms_norm(x.data(), w.data(), y.data(), 1, 4, 1e-6f, false);
  for (int i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(y[static_cast<size_t>(i)], x[static_cast<size_t>(i)] * inv * w[static_cast<size_t>(i)]);
  rms_norm(x.data(), w.data(), y.data(), 1, 4, 1e-6f, true);
  for (int i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(y[static_cast<size_t>(i)], x[static_cast<size_t>(i)] * inv * (1 + w[static_cast<size_t>(i)]));
}

TEST(Kernels, RopeRotatesHalvesAndKeepsNorm) {
  // One head of width 4: pairs (0,2) and (1,3) rotate by pos*f0 and pos*f1.
  std::vector<float> x = {1, 2, 3, 4};
  float inv_freq[2] = {1.0f, 0.1f};
  int64_t pos = 3;
  rope(x.data(), 1, 4, 1, 4, 4, &pos, inv_freq, 1.0f);
  EXPECT_NEAR(x[0], 1 * std::cos(3.0f) - 3 * std::sin(3.0f), 1e-6);
  EXPECT_NEAR(x[2], 3 * std::cos(3.0f) + 1 * std::sin(3.0f), 1e-6);
  EXPECT_NEAR(x[1], 2 * std::cos(0.3f) - 4 * std::sin(0.3f), 1e-6);
  EXPECT_NEAR(x[3], 4 * std::cos(0.3f) + 2 * std::sin(0.3f), 1e-6);
}

TEST(Kernels, SoftmaxSumsToOneAndIsStable) {
  std::vector<float> x = {1000.0f, 1001.0f, 999.0f};
  softmax(x.data(), 3);
  EXPECT_NEAR(x[0] + x[1] + x[2], 1.0f, 1e-6);
  EXPECT_GT(x[1], x[0]);
  EXPECT_FALSE(std::isnan(x[0]));
}

TEST(ThreadPool, CoversRangeInGrainedChunks) {
  ThreadPool pool(2);
  for (int64_t n : {1, 5, 16, 17, 1000}) {
    std::vector<int> hits(static_cast<size_t>(n), 0);
    pool.parallel_for(n, 4, [&](int64_t b, int64_t e) {
      EXPECT_EQ(b % 4, 0);
      for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
    });
    for (int h : hits) EXPECT_EQ(h, 1);
  }
  // Nested calls run on the caller instead of deadlocking.
  int inner = 0;
  pool.parallel_for(2, 1, [&](int64_t, int64_t) { pool.parallel_for(3, 1, [&](int64_t b, int64_t e) { if (b == 0 && e == 3) __atomic_add_fetch(&inner, 1, __ATOMIC_RELAXED); }); });
  EXPECT_EQ(inner, 2);
  EXPECT_GE(ThreadPool::physical_cores(), 1);
}

}  // namespace
}  // namespace quanta::kernels
