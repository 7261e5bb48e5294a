// The quantized dot kernels against the reference dequantizers.
//
// Weight blocks are the real ones of the gguf-py / llama.cpp fixtures
// (tests/unit/data/gguf/dequant/TYPE.gguf, whose dequantization is bit-exact to
// gguf-py's): every kernel must give sum_i dequant(w)[i] * dequant(xq)[i], the
// exact math of the block format against the quantized activations, computed
// here in double. Rows are made of the fixture's blocks in random order and
// number, so multi-block accumulation and every block offset are exercised.
//
// Tolerance, from the arithmetic: the kernels' integer sums are exact; per
// block they round a scale product, a product and an accumulation (and the
// reference's f32 dequantization rounds once per element), each a relative
// error <= 2^-24 of a term bounded by M = 2 max|w| sum|x| (the factor 2 covers
// K-quant minimums, subtracted separately). So |error| <= 4 (n_32 + 8) 2^-24 M
// with n_32 the number of 32-element groups.
// A misplaced nibble, bit or scale changes the result by a fraction of M.
#include "quanta/kernels/quant_dot.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "quanta/format/ggml_types.h"
#include "quanta/format/gguf.h"
#include "test_util.h"

namespace quanta::kernels {
namespace {

using format::GgmlType;

struct TypeCase {
  const char* name;
  GgmlType type;
};

const TypeCase kTypes[] = {
    {"Q4_0", GgmlType::kQ4_0}, {"Q4_1", GgmlType::kQ4_1},   {"Q5_0", GgmlType::kQ5_0},
    {"Q5_1", GgmlType::kQ5_1}, {"Q8_0", GgmlType::kQ8_0},   {"Q2_K", GgmlType::kQ2_K},
    {"Q3_K", GgmlType::kQ3_K}, {"Q4_K", GgmlType::kQ4_K},   {"Q5_K", GgmlType::kQ5_K},
    {"Q6_K", GgmlType::kQ6_K}, {"IQ4_NL", GgmlType::kIQ4_NL}, {"IQ4_XS", GgmlType::kIQ4_XS},
    {"MXFP4", GgmlType::kMXFP4},
};

// Every block of every fixture tensor of the type whose values are finite.
std::vector<std::vector<uint8_t>> fixture_blocks(const TypeCase& tc) {
  format::GgufFile file(test::source_path(std::string("tests/unit/data/gguf/dequant/") + tc.name + ".gguf"));
  const auto& info = format::ggml_type_info(tc.type);
  std::vector<std::vector<uint8_t>> blocks;
  std::vector<float> values(static_cast<size_t>(info.block_size));
  for (const auto& t : file.tensors()) {
    if (t.name.ends_with(".expected")) continue;
    const uint8_t* data = file.data(t);
    for (uint64_t off = 0; off < t.nbytes; off += info.type_size) {
      format::dequantize_row(tc.type, data + off, values.data(), info.block_size);
      if (!std::all_of(values.begin(), values.end(), [](float v) { return std::isfinite(v); })) continue;
      blocks.emplace_back(data + off, data + off + info.type_size);
    }
  }
  return blocks;
}

// Element i of a BlockQ16x4 row: its code, unbiased, times the unit's scale.
float q16x4_value(const BlockQ16x4* units, int64_t i) {
  const BlockQ16x4& u = units[i / 128];
  const int j = static_cast<int>(i % 128), half = j % 32 / 16, pos = 16 * (j / 32) + j % 16;
  return u.d * static_cast<float>(256 * u.hi[half][pos] + u.lo[half][pos]);
}

// The activation row as the kernel sees it: quantized, and dequantized for the reference.
struct Activations {
  std::vector<uint8_t> bytes;
  std::vector<float> values;
};

Activations quantize(const std::vector<float>& x, ActLayout layout) {
  const int64_t n = static_cast<int64_t>(x.size());
  Activations a;
  a.bytes.resize(static_cast<size_t>(quant_act_bytes(layout, n)));
  quantize_act(layout, x.data(), n, a.bytes.data());
  for (int64_t i = 0; i < n; ++i) {
    switch (layout) {
      case ActLayout::kQ16K: {
        const auto& b = reinterpret_cast<const BlockQ16K*>(a.bytes.data())[i / 256];
        a.values.push_back(b.d * b.qs[i % 256]);
        break;
      }
      case ActLayout::kQ16Kx: {
        const auto& b = reinterpret_cast<const BlockQ16Kx*>(a.bytes.data())[i / 256];
        const int t = static_cast<int>(i % 128), k = 2 * static_cast<int>(i % 256 / 128) + t % 64 / 32,
                  p = 32 * (t / 64) + t % 32;
        a.values.push_back(b.d * static_cast<float>(256 * b.hi[k][p] + b.lo[k][p]));
        break;
      }
      case ActLayout::kQ16x4:
        a.values.push_back(q16x4_value(reinterpret_cast<const BlockQ16x4*>(a.bytes.data()), i));
        break;
      case ActLayout::kQ16: {
        const auto& b = reinterpret_cast<const BlockQ16*>(a.bytes.data())[i / 32];
        a.values.push_back(b.d * b.qs[i % 32]);
        break;
      }
    }
  }
  return a;
}

class QuantDot : public ::testing::TestWithParam<TypeCase> {};

TEST_P(QuantDot, MatchesTheDequantizedDotOnEveryIsa) {
  const TypeCase tc = GetParam();
  const auto& info = format::ggml_type_info(tc.type);
  const auto blocks = fixture_blocks(tc);
  ASSERT_GE(blocks.size(), 2u) << tc.name;
  std::mt19937 rng(1234 + static_cast<unsigned>(tc.type));
  std::normal_distribution<float> normal(0.0f, 1.0f);

  int checked_isas = 0;
  for (Isa isa : {Isa::kAvx2, Isa::kAvx512, Isa::kAmx}) {
    if (static_cast<int>(isa) > static_cast<int>(host_isa())) continue;
    ++checked_isas;
    // The kernels for one token and for several (different where a tier has a one-token kernel).
    const QuantDotKernel one = quant_dot_for(isa, static_cast<uint32_t>(tc.type), 1);
    const QuantDotKernel several = quant_dot_for(isa, static_cast<uint32_t>(tc.type), 3);
    for (const QuantDotKernel* kernel : {&one, &several}) {
      if (kernel == &several && several.fn == one.fn) continue;
      const QuantDotFn dot = kernel->fn;
      ASSERT_NE(dot, nullptr) << tc.name << " has no " << isa_name(isa) << " kernel";
      const ActLayout group = kernel->layout;
      for (int trial = 0; trial < 40; ++trial) {
        // 1 block, every block once, or a random multiset of up to 64 blocks.
        std::vector<size_t> order;
        if (trial < static_cast<int>(blocks.size()) && trial < 8) order = {static_cast<size_t>(trial)};
        else if (trial == 8) for (size_t i = 0; i < blocks.size(); ++i) order.push_back(i);
        else {
          const size_t count = 1 + rng() % 64;
          for (size_t i = 0; i < count; ++i) order.push_back(rng() % blocks.size());
        }
        std::vector<uint8_t> row;
        for (size_t i : order) row.insert(row.end(), blocks[i].begin(), blocks[i].end());
        const int64_t n = static_cast<int64_t>(order.size()) * info.block_size;

        // Activations with outliers, like a real hidden state.
        std::vector<float> x(static_cast<size_t>(n));
        for (float& v : x) v = normal(rng) * (rng() % 50 == 0 ? 20.0f : 1.0f);
        const Activations a = quantize(x, group);

        std::vector<float> w(static_cast<size_t>(n));
        format::dequantize_row(tc.type, row.data(), w.data(), n);
        double want = 0.0, sum_abs_x = 0.0, max_w = 0.0;
        for (int64_t i = 0; i < n; ++i) {
          want += static_cast<double>(w[i]) * a.values[i];
          sum_abs_x += std::fabs(a.values[i]);
          max_w = std::max(max_w, static_cast<double>(std::fabs(w[i])));
        }
        const double bound = 4.0 * (static_cast<double>(n / 32) + 8) * std::ldexp(1.0, -24) * 2 * max_w * sum_abs_x;
        float got = 0.0f;
        dot(n, row.data(), a.bytes.data(), static_cast<int64_t>(a.bytes.size()), 1, &got);
        EXPECT_NEAR(got, want, bound) << tc.name << " on " << isa_name(isa) << ", " << order.size() << " blocks";

        // Several tokens at once (the weight decoded once per four) give each token's own dot product.
        if (trial % 8 == 0) {
          const int n_tokens = 1 + trial % 7;
          std::vector<Activations> tokens;
          std::vector<uint8_t> all;
          for (int t = 0; t < n_tokens; ++t) {
            std::vector<float> xt(static_cast<size_t>(n));
            for (float& v : xt) v = normal(rng);
            tokens.push_back(quantize(xt, group));
            all.insert(all.end(), tokens.back().bytes.begin(), tokens.back().bytes.end());
          }
          std::vector<float> outs(static_cast<size_t>(n_tokens));
          dot(n, row.data(), all.data(), quant_act_bytes(group, n), n_tokens, outs.data());
          for (int t = 0; t < n_tokens; ++t) {
            float single = 0.0f;
            dot(n, row.data(), tokens[t].bytes.data(), quant_act_bytes(group, n), 1, &single);
            double sum_abs = 0.0;
            for (float v : tokens[t].values) sum_abs += std::fabs(v);
            EXPECT_NEAR(outs[t], single, 2.0 * (static_cast<double>(n / 32) + 8) * std::ldexp(1.0, -24) * 2 * max_w * sum_abs)
                << tc.name << " token " << t << " of " << n_tokens;
          }
        }
      }
    }
  }
  if (checked_isas == 0) GTEST_SKIP() << "this CPU runs no ISA with quantized dot kernels";
}

// The fast dequantizer (prompt tiles) against the reference one, block by block:
// each value is scale * q - min in another order of roundings, so within a few
// ulp of the block's largest term.
TEST_P(QuantDot, FastDequantizerMatchesTheReference) {
  const TypeCase tc = GetParam();
  const auto& info = format::ggml_type_info(tc.type);
  int checked_isas = 0;
  for (Isa isa : {Isa::kAvx2, Isa::kAvx512, Isa::kAmx}) {
    if (static_cast<int>(isa) > static_cast<int>(host_isa())) continue;
    const QuantDequantFn dequant = quant_dequant_for(isa, static_cast<uint32_t>(tc.type));
    ASSERT_NE(dequant, nullptr) << tc.name;
    ++checked_isas;
    std::vector<float> want(static_cast<size_t>(info.block_size)), got(want.size());
    for (const auto& block : fixture_blocks(tc)) {
      format::dequantize_row(tc.type, block.data(), want.data(), info.block_size);
      dequant(block.data(), got.data(), info.block_size);
      float max_abs = 0.0f;
      for (float v : want) max_abs = std::max(max_abs, std::fabs(v));
      for (int64_t i = 0; i < info.block_size; ++i)
        ASSERT_NEAR(got[i], want[i], 8 * std::ldexp(max_abs, -24)) << tc.name << " element " << i;
    }
  }
  if (checked_isas == 0) GTEST_SKIP() << "this CPU runs no ISA with quantized kernels";
}

// The prompt GEMM (AVX-512 and up) against the same reference: every row and
// token of a panel, rows of random fixture blocks, ragged row counts, token
// counts past the 6-token tiles, rows longer than one 1024-input chunk, and
// strides wider than the data. The bound is the dot kernels' with one set of
// roundings per 16 weights (the narrowest window).
TEST_P(QuantDot, PromptGemmMatchesTheDequantizedDotOnEveryIsa) {
  const TypeCase tc = GetParam();
  const auto& info = format::ggml_type_info(tc.type);
  const auto blocks = fixture_blocks(tc);
  std::mt19937 rng(4321 + static_cast<unsigned>(tc.type));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  int checked_isas = 0;
  for (Isa isa : {Isa::kAvx512, Isa::kAmx}) {
    if (static_cast<int>(isa) > static_cast<int>(host_isa())) continue;
    const QuantGemmFn gemm = quant_gemm_for(isa, static_cast<uint32_t>(tc.type));
    ASSERT_NE(gemm, nullptr) << tc.name << " has no " << isa_name(isa) << " prompt GEMM";
    ++checked_isas;
    const struct { int rows, tokens, n_blocks; } shapes[] = {{1, 1, 1}, {17, 3, 2}, {32, 7, 5}, {32, 17, 64}, {9, 13, 40}};
    for (const auto& shape : shapes) {
      const int64_t n = static_cast<int64_t>(shape.n_blocks) * info.block_size;
      const int64_t row_bytes = static_cast<int64_t>(shape.n_blocks) * info.type_size + 5;
      std::vector<uint8_t> w(static_cast<size_t>(row_bytes * shape.rows));
      std::vector<float> wf(static_cast<size_t>(n * shape.rows));
      for (int r = 0; r < shape.rows; ++r) {
        for (int b = 0; b < shape.n_blocks; ++b) {
          const auto& blk = blocks[rng() % blocks.size()];
          std::copy(blk.begin(), blk.end(), w.begin() + r * row_bytes + b * info.type_size);
        }
        format::dequantize_row(tc.type, w.data() + r * row_bytes, wf.data() + r * n, n);
      }
      std::vector<Activations> tokens;
      std::vector<uint8_t> all;
      for (int t = 0; t < shape.tokens; ++t) {
        std::vector<float> x(static_cast<size_t>(n));
        for (float& v : x) v = normal(rng) * (rng() % 50 == 0 ? 20.0f : 1.0f);
        tokens.push_back(quantize(x, ActLayout::kQ16));
        all.insert(all.end(), tokens.back().bytes.begin(), tokens.back().bytes.end());
      }
      const int64_t y_stride = shape.rows + 3;
      std::vector<float> y(static_cast<size_t>(y_stride * shape.tokens), -1.0f);
      gemm(n, w.data(), row_bytes, shape.rows, all.data(), quant_act_bytes(ActLayout::kQ16, n), shape.tokens, y.data(), y_stride);
      for (int t = 0; t < shape.tokens; ++t) {
        for (int r = 0; r < shape.rows; ++r) {
          double want = 0.0, sum_abs_x = 0.0, max_w = 0.0;
          for (int64_t i = 0; i < n; ++i) {
            want += static_cast<double>(wf[r * n + i]) * tokens[t].values[i];
            sum_abs_x += std::fabs(tokens[t].values[i]);
            max_w = std::max(max_w, static_cast<double>(std::fabs(wf[r * n + i])));
          }
          const double bound = 4.0 * (static_cast<double>(n / 16) + 8) * std::ldexp(1.0, -24) * 2 * max_w * sum_abs_x;
          ASSERT_NEAR(y[t * y_stride + r], want, bound)
              << tc.name << " on " << isa_name(isa) << ", row " << r << " of " << shape.rows << ", token " << t
              << " of " << shape.tokens << ", " << shape.n_blocks << " blocks";
        }
        for (int64_t r = shape.rows; r < y_stride; ++r) ASSERT_EQ(y[t * y_stride + r], -1.0f) << "wrote past the rows";
      }
    }
  }
  if (checked_isas == 0) GTEST_SKIP() << "this CPU has no integer prompt GEMM tier";
}

INSTANTIATE_TEST_SUITE_P(Types, QuantDot, ::testing::ValuesIn(kTypes),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(QuantDot, ScalarLevelHasNoKernels) {
  // The scalar level multiplies by dequantizing; a kernel there would go untested.
  for (const auto& tc : kTypes) {
    EXPECT_EQ(quant_dot_for(Isa::kScalar, static_cast<uint32_t>(tc.type)).fn, nullptr);
    EXPECT_EQ(quant_gemm_for(Isa::kScalar, static_cast<uint32_t>(tc.type)), nullptr);
    EXPECT_EQ(quant_gemm_for(Isa::kAvx2, static_cast<uint32_t>(tc.type)), nullptr);
  }
}

TEST(ActivationQuantization, Q16RoundsToTheNearestStepAndKeepsTheHalfBlockSums) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> x(256);
  for (float& v : x) v = normal(rng);
  x[40] = -50.0f;                                     // the largest magnitude of block 1, negative
  std::fill(x.begin() + 64, x.begin() + 96, 0.0f);  // an all-zero block
  std::vector<BlockQ16> q(8);
  quantize_q16(x.data(), q.data(), 256);
  for (int b = 0; b < 8; ++b) {
    float amax = 0.0f;
    int sum[2] = {0, 0};
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[32 * b + i]));
    EXPECT_FLOAT_EQ(q[b].d, amax / 32767.0f);
    for (int i = 0; i < 32; ++i) {
      sum[i / 16] += q[b].qs[i];
      EXPECT_LE(std::fabs(q[b].d * q[b].qs[i] - x[32 * b + i]), 0.5f * q[b].d * (1 + 1e-3f));
    }
    EXPECT_EQ(q[b].dsum[0], q[b].d * static_cast<float>(sum[0]));
    EXPECT_EQ(q[b].dsum[1], q[b].d * static_cast<float>(sum[1]));
  }
  EXPECT_EQ(q[1].qs[40 - 32], -32767);
  EXPECT_EQ(q[2].d, 0.0f);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(q[2].qs[i], 0);
}

TEST(ActivationQuantization, Q16KSharesOneScaleOver256AndKeepsTheSumsOf16) {
  std::mt19937 rng(8);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(512);
  for (float& v : x) v = normal(rng);
  x[300] = 9.0f;                                     // the largest magnitude of the second 256
  std::fill(x.begin() + 16, x.begin() + 32, 0.0f);  // an all-zero 16
  std::vector<BlockQ16K> q(2);
  quantize_q16k(x.data(), q.data(), 512);
  EXPECT_EQ(quant_act_bytes(ActLayout::kQ16K, 512), 2 * static_cast<int64_t>(sizeof(BlockQ16K)));
  for (int b = 0; b < 2; ++b) {
    float amax = 0.0f;
    for (int i = 256 * b; i < 256 * (b + 1); ++i) amax = std::max(amax, std::fabs(x[i]));
    EXPECT_FLOAT_EQ(q[b].d, amax / 32767.0f);
    for (int j = 0; j < 16; ++j) {
      int sum = 0;
      for (int i = 16 * j; i < 16 * j + 16; ++i) {
        sum += q[b].qs[i];
        EXPECT_LE(std::fabs(q[b].d * q[b].qs[i] - x[256 * b + i]), 0.5f * q[b].d * (1 + 1e-3f));
      }
      EXPECT_EQ(q[b].hsum[j], q[b].d * static_cast<float>(sum)) << "block " << b << " sum " << j;
    }
  }
  EXPECT_EQ(q[1].qs[300 - 256], 32767);
  EXPECT_EQ(q[0].hsum[1], 0.0f);
}

TEST(ActivationQuantization, Q16x4SplitsTheCodesIntoBytesInBlockHalves) {
  std::mt19937 rng(9);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> x(160);  // one full unit and a unit of 32 padded with zeros
  for (float& v : x) v = normal(rng);
  x[37] = -21.0f;   // the largest magnitude of the first unit: code -32767
  x[150] = 20.0f;   // and of the second: 32767
  std::vector<BlockQ16x4> q(2);
  quantize_q16x4(x.data(), q.data(), 160);
  EXPECT_EQ(quant_act_bytes(ActLayout::kQ16x4, 160), 2 * static_cast<int64_t>(sizeof(BlockQ16x4)));
  EXPECT_FLOAT_EQ(q[0].d, 21.0f / 32767.0f);
  EXPECT_FLOAT_EQ(q[1].d, 20.0f / 32767.0f);
  // Element 37 is block 1, half 0, position 5: bytes 16 + 5.
  EXPECT_EQ(q[0].hi[0][21], -128);
  EXPECT_EQ(q[0].lo[0][21], 1);
  EXPECT_EQ(q[1].hi[1][6], 127);  // element 128 + 22: block 0, half 1, position 6
  EXPECT_EQ(q[1].lo[1][6], 255);
  for (int u = 0; u < 2; ++u)
    for (int l = 0; l < 16; ++l) {
      int sum = 0;
      for (int h = 0; h < 2; ++h)
        for (int i = 4 * l; i < 4 * l + 4; ++i) sum += q[u].hi[h][i];
      EXPECT_EQ(q[u].neg_hi_sum[l], -sum) << "unit " << u << " lane " << l;
    }
  for (int64_t i = 0; i < 256; ++i) {
    const float v = q16x4_value(q.data(), i);
    if (i < 160) EXPECT_LE(std::fabs(v - x[i]), 0.5f * q[i / 128].d * (1 + 1e-3f)) << i;
    else EXPECT_EQ(v, 0.0f) << "padding " << i;
  }
}

TEST(ActivationQuantization, Q16KxSplitsTheCodesInTheOrderOfQ4KNibbles) {
  std::mt19937 rng(10);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(256);
  for (float& v : x) v = normal(rng);
  x[200] = -9.0f;  // the largest magnitude: code -32767
  std::vector<BlockQ16Kx> q(1);
  quantize_q16kx(x.data(), q.data(), 256);
  EXPECT_EQ(quant_act_bytes(ActLayout::kQ16Kx, 256), static_cast<int64_t>(sizeof(BlockQ16Kx)));
  EXPECT_FLOAT_EQ(q[0].d, 9.0f / 32767.0f);
  // Element 200 = 128 + 64 + 8: register 2 (low nibbles of the second 64 bytes), byte 32 + 8.
  EXPECT_EQ(256 * q[0].hi[2][40] + q[0].lo[2][40], -32767);
  int sums[16] = {};
  for (int k = 0; k < 4; ++k)
    for (int p = 0; p < 64; ++p) {
      const int e = 128 * (k / 2) + 64 * (p / 32) + 32 * (k % 2) + p % 32;
      const int code = 256 * q[0].hi[k][p] + q[0].lo[k][p];
      EXPECT_LE(std::fabs(q[0].d * static_cast<float>(code) - x[e]), 0.5f * q[0].d * (1 + 1e-3f)) << e;
      sums[e / 16] += code;
    }
  for (int j = 0; j < 16; ++j) EXPECT_EQ(q[0].xsum[j], q[0].d * static_cast<float>(sums[j])) << j;
}

TEST(ActivationQuantization, KernelsWantTheLayoutsTheirBlocksNeed) {
  for (const auto& tc : kTypes) {
    const uint32_t t = static_cast<uint32_t>(tc.type);
    const bool k = format::ggml_type_info(tc.type).block_size == 256;
    const ActLayout words = k ? ActLayout::kQ16K : ActLayout::kQ16;
    EXPECT_EQ(quant_dot_for(Isa::kAvx2, t).layout, words) << tc.name;
    // On AVX-512 Q4_0, Q4_K and Q5_K multiply bytes, and Q6_K for one token.
    for (Isa isa : {Isa::kAvx512, Isa::kAmx})
      for (int n_tokens : {1, 2, 5}) {
        const ActLayout want = tc.type == GgmlType::kQ4_0 ? ActLayout::kQ16x4
                               : tc.type == GgmlType::kQ4_K || tc.type == GgmlType::kQ5_K ||
                                       (tc.type == GgmlType::kQ6_K && n_tokens == 1)
                                   ? ActLayout::kQ16Kx
                                   : words;
        EXPECT_EQ(quant_dot_for(isa, t, n_tokens).layout, want) << tc.name << ", " << n_tokens << " tokens";
      }
  }
}

}  // namespace
}  // namespace quanta::kernels
