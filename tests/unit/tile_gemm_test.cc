// AMX tile GEMMs against direct sums: int8 exact, bf16 within the f32 summation
// bound of products that are exact (both operands bf16). Ragged shapes: k not a
// multiple of a tile chunk, token counts around the 16-token blocks, row ranges
// that start and end inside a 16-row tile, as threads split them. On a host
// without AMX these tests say so and check nothing else (GTEST_SKIP).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "quanta/core/dtype.h"
#include "quanta/kernels/tile_gemm.h"

namespace quanta::kernels {
namespace {

struct Case {
  int64_t t, n, k;
};
const Case kCases[] = {{1, 16, 64}, {3, 17, 64}, {17, 32, 128}, {16, 33, 96}, {33, 48, 640}, {300, 40, 200},
                       {31, 5, 7},  {64, 64, 2048}, {40, 70, 1536}};

// Row ranges [n0, n1) covering [0, n) as two threads would split them.
std::vector<std::pair<int64_t, int64_t>> splits(int64_t n) {
  if (n < 4) return {{0, n}};
  return {{0, n / 3}, {n / 3, n}};
}

TEST(TileGemm, Int8IsExact) {
  if (!tiles_usable(host_isa())) GTEST_SKIP() << "no AMX on this CPU (" << cpu_features_string() << ")";
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> d(-128, 127);
  for (Case c : kCases) {
    const int64_t ldw = c.k + 3;  // rows with a gap after them
    std::vector<int8_t> x(c.t * c.k), w(c.n * ldw, 99);
    for (auto& v : x) v = static_cast<int8_t>(d(rng));
    for (int64_t n = 0; n < c.n; ++n)
      for (int64_t i = 0; i < c.k; ++i) w[n * ldw + i] = static_cast<int8_t>(d(rng));
    x[0] = -128, w[0] = -128;
    std::vector<uint8_t> packed(tile_packed_bytes(c.t, c.k, 1));
    tile_pack_s8(x.data(), c.k, c.t, c.k, 0, (c.t + 15) / 16, packed.data());
    std::vector<int32_t> got(c.t * c.n, 7);
    for (auto [n0, n1] : splits(c.n))
      tile_gemm_s8({packed.data(), c.t, c.k, w.data() + n0 * ldw, ldw, 0, n1 - n0, got.data() + n0, c.n});
    for (int64_t t = 0; t < c.t; ++t)
      for (int64_t n = 0; n < c.n; ++n) {
        int32_t want = 0;
        for (int64_t i = 0; i < c.k; ++i) want += x[t * c.k + i] * w[n * ldw + i];
        ASSERT_EQ(got[t * c.n + n], want) << "T=" << c.t << " N=" << c.n << " K=" << c.k << " at t=" << t << " n=" << n;
      }
  }
}

// The bf16 GEMM with 1 term (operands rounded to bf16), 2 (bf16 weights, split
// activations) and 3 (both split): each against the exact sum of the products of
// its parts, and the split ones against the f32 operands within 2^-16 relative.
TEST(TileGemm, Bf16TermsMatchTheExactProductsWithinTheF32SumBound) {
  if (!tiles_usable(host_isa())) GTEST_SKIP() << "no AMX on this CPU (" << cpu_features_string() << ")";
  std::mt19937 rng(4);
  std::normal_distribution<float> d(0.0f, 1.0f);
  const double u = std::numeric_limits<float>::epsilon() / 2;
  for (int n_terms : {1, 2, 3})
    for (Case c : kCases) {
      std::vector<float> x(c.t * c.k), wf(c.n * c.k);
      for (auto& v : x) v = d(rng);
      for (auto& v : wf) v = n_terms == 3 ? d(rng) : bf16_to_f32(f32_to_bf16(d(rng)));
      // Weight parts: hi rows, then lo rows (3 terms).
      std::vector<uint16_t> w(2 * c.n * c.k);
      tile_f32_to_bf16(wf.data(), w.data(), w.data() + c.n * c.k, c.n * c.k);
      const bool split = n_terms > 1;
      std::vector<uint8_t> packed(tile_packed_bytes(c.t, c.k, 2) * (split ? 2 : 1));
      const int64_t ntb = (c.t + 15) / 16;  // two halves packed separately, as threads do
      tile_pack_bf16(x.data(), c.k, c.t, c.k, split, 0, ntb / 2, packed.data());
      tile_pack_bf16(x.data(), c.k, c.t, c.k, split, ntb / 2, ntb, packed.data());
      std::vector<float> got(c.t * c.n, 7.0f);
      for (auto [n0, n1] : splits(c.n)) {
        TileGemmArgs a{packed.data(), c.t, c.k, w.data() + n0 * c.k, 2 * c.k, 0, n1 - n0, got.data() + n0, c.n};
        if (n_terms == 2) a = tile_terms_w_xsplit(a);
        if (n_terms == 3) a = tile_terms_wsplit_xsplit(a, 2 * c.n * c.k);
        tile_gemm_bf16(a);
      }
      if (n_terms == 3) {
        // Decoding the f32 weights inside the GEMM gives the same parts, so the same sums.
        std::vector<float> dec(c.t * c.n, 7.0f);
        auto row = [](const void* ctx, int64_t n, int64_t rows, int64_t k0, int64_t len, float* out) {
          const auto* m = static_cast<const std::pair<const float*, int64_t>*>(ctx);
          for (int64_t r = 0; r < rows; ++r) std::copy_n(m->first + (n + r) * m->second + k0, len, out + r * len);
        };
        const std::pair<const float*, int64_t> ctx{wf.data(), c.k};
        for (auto [n0, n1] : splits(c.n)) {
          if (c.k % 32) continue;  // decoded rows come in whole 32-blocks
          TileGemmArgs a = tile_terms_wsplit_xsplit(
              {packed.data(), c.t, c.k, nullptr, 0, n0, n1, dec.data() + n0, c.n}, 0);
          a.decode = row;
          a.decode_ctx = &ctx;
          tile_gemm_bf16(a);
        }
        if (c.k % 32 == 0) ASSERT_EQ(dec, got) << "decoded weights, T=" << c.t << " N=" << c.n << " K=" << c.k;
      }
      auto hi = [](float v) { return static_cast<double>(bf16_to_f32(f32_to_bf16(v))); };
      auto lo = [&](float v) { return static_cast<double>(bf16_to_f32(f32_to_bf16(v - static_cast<float>(hi(v))))); };
      for (int64_t t = 0; t < c.t; ++t)
        for (int64_t n = 0; n < c.n; ++n) {
          double want = 0, abs_sum = 0, exact = 0;
          for (int64_t i = 0; i < c.k; ++i) {
            const float xv = x[t * c.k + i], wv = wf[n * c.k + i];
            double p = hi(xv) * hi(wv);
            if (n_terms >= 2) p += lo(xv) * hi(wv);
            if (n_terms == 3) p += hi(xv) * lo(wv);
            want += p;
            abs_sum += std::fabs(p);
            exact += static_cast<double>(xv) * wv;
          }
          const int64_t terms = c.k * n_terms;
          const double tol = (terms + 1) * u / (1 - (terms + 1) * u) * abs_sum + 1e-30;
          const float g = got[t * c.n + n];
          ASSERT_NEAR(g, want, tol) << n_terms << " terms T=" << c.t << " N=" << c.n << " K=" << c.k << " at t=" << t
                                    << " n=" << n;
          if (split) ASSERT_NEAR(g, exact, tol + 4 * std::ldexp(abs_sum, -16)) << n_terms << " terms, against f32";
        }
    }
}

TEST(TileGemm, F32ToBf16RoundsToNearestEvenAndSplits) {
  if (!tiles_usable(host_isa())) GTEST_SKIP() << "no AMX on this CPU (" << cpu_features_string() << ")";
  std::mt19937 rng(5);
  std::normal_distribution<float> d(0.0f, 3.0f);
  for (int64_t n : {1, 15, 16, 31, 32, 33, 100}) {
    std::vector<float> x(n);
    for (auto& v : x) v = d(rng);
    std::vector<uint16_t> hi(n + 1, 0xABCD), lo(n + 1, 0xABCD);
    tile_f32_to_bf16(x.data(), hi.data(), lo.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_EQ(hi[i], f32_to_bf16(x[i])) << "n=" << n << " i=" << i;
      ASSERT_EQ(lo[i], f32_to_bf16(x[i] - bf16_to_f32(hi[i]))) << "n=" << n << " i=" << i;
    }
    EXPECT_EQ(hi[n], 0xABCD) << "wrote past the end, n=" << n;
    EXPECT_EQ(lo[n], 0xABCD) << "wrote past the end, n=" << n;
  }
}

}  // namespace
}  // namespace quanta::kernels
