// MX block formats (core/mx.h) against the OCP MX v1.0 definitions, written out
// again here from the spec's formulas (checkpoint-formats-1.md sec. 4) rather
// than through quanta's dtype tables.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "quanta/core/mx.h"

namespace quanta {
namespace {

// Element value straight from the bit layout (sec. 4.1).
double spec_elem(MxElem e, uint8_t code) {
  int sbits, ebits, mbits, bias;
  switch (e) {
    case MxElem::kE4M3: sbits = 7; ebits = 4; mbits = 3; bias = 7; break;
    case MxElem::kE5M2: sbits = 7; ebits = 5; mbits = 2; bias = 15; break;
    default: sbits = 3; ebits = 2; mbits = 1; bias = 1; code &= 0xF; break;
  }
  const int s = (code >> sbits) & 1;
  const int ex = (code >> mbits) & ((1 << ebits) - 1);
  const int m = code & ((1 << mbits) - 1);
  const double sign = s ? -1.0 : 1.0;
  if (e == MxElem::kE4M3 && ex == 15 && m == 7) return std::nan("");
  if (e == MxElem::kE5M2 && ex == 31) return m == 0 ? sign * INFINITY : std::nan("");
  if (ex == 0) return sign * std::ldexp(m, 1 - bias - mbits);
  return sign * std::ldexp((1 << mbits) + m, ex - bias - mbits);
}

int n_codes(MxElem e) { return e == MxElem::kE2M1 ? 16 : 256; }
const MxElem kElems[] = {MxElem::kE4M3, MxElem::kE5M2, MxElem::kE2M1};

TEST(Mx, DecodeEveryCodeAtEveryScale) {
  for (MxElem e : kElems)
    for (int s = 0; s < 256; ++s)
      for (int c = 0; c < n_codes(e); ++c) {
        const float got = mx_decode(e, static_cast<uint8_t>(c), static_cast<uint8_t>(s));
        const double elem = spec_elem(e, static_cast<uint8_t>(c));
        if (s == 255 || std::isnan(elem)) {
          EXPECT_TRUE(std::isnan(got)) << mx_elem_name(e) << " code " << c << " scale " << s;
          continue;
        }
        const float want = static_cast<float>(std::ldexp(elem, s - 127));
        ASSERT_EQ(std::memcmp(&got, &want, 4), 0)
            << mx_elem_name(e) << " code " << c << " scale " << s << ": " << got << " vs " << want;
      }
}

TEST(Mx, MaxNormalAndEmax) {
  EXPECT_EQ(mx_max_normal(MxElem::kE4M3), spec_elem(MxElem::kE4M3, 0x7E));
  EXPECT_EQ(mx_max_normal(MxElem::kE5M2), spec_elem(MxElem::kE5M2, 0x7B));
  EXPECT_EQ(mx_max_normal(MxElem::kE2M1), spec_elem(MxElem::kE2M1, 0x7));
  for (MxElem e : kElems) EXPECT_EQ(std::floor(std::log2(mx_max_normal(e))), mx_emax(e));
}

// Every finite code, at every scale that keeps the block in f32's normal range,
// survives encode(decode(.)) when its block also holds the max normal (which
// pins the shared exponent to that scale).
TEST(Mx, RoundTripEveryFiniteCode) {
  for (MxElem e : kElems)
    for (int s = 1; s < 255; ++s)
      for (int c = 0; c < n_codes(e); ++c) {
        const double elem = spec_elem(e, static_cast<uint8_t>(c));
        if (!std::isfinite(elem)) continue;
        float v[2] = {mx_decode(e, static_cast<uint8_t>(c), static_cast<uint8_t>(s)),
                      static_cast<float>(std::ldexp(mx_max_normal(e), s - 127))};
        if (!std::isfinite(v[1]) || std::fpclassify(v[0]) == FP_SUBNORMAL) continue;
        uint8_t codes[2];
        const uint8_t scale = mx_quantize_block(e, v, 2, codes);
        ASSERT_EQ(scale, s) << mx_elem_name(e) << " code " << c;
        ASSERT_EQ(mx_decode(e, codes[0], scale), v[0]) << mx_elem_name(e) << " code " << c << " scale " << s;
        if (elem != 0.0) ASSERT_EQ(codes[0], c) << mx_elem_name(e) << " scale " << s;
      }
}

TEST(Mx, SharedExponentRule) {
  // floor(log2(amax)) - emax + 127, over a sweep of amax in [2^k, 2^(k+1)).
  for (MxElem e : kElems)
    for (int k = -120; k <= 120; ++k)
      for (double f : {1.0, 1.25, 1.5, 1.999}) {
        const float amax = static_cast<float>(std::ldexp(f, k));
        int want = k - mx_emax(e) + 127;
        want = std::max(want, 0);
        EXPECT_EQ(mx_scale_code(e, amax), want) << mx_elem_name(e) << " amax " << amax;
        EXPECT_EQ(mx_scale_code(e, -amax), want);
      }
  // amax 0 counts as the smallest normal 2^-126: shared -126 - emax clamps to -127.
  for (MxElem e : kElems) EXPECT_EQ(mx_scale_code(e, 0.0f), 0);
  // The largest f32 (just below 2^128) with E2M1: 127 - 2 = 125 -> code 252.
  EXPECT_EQ(mx_scale_code(MxElem::kE2M1, std::numeric_limits<float>::max()), 252);
  for (MxElem e : kElems) {
    EXPECT_EQ(mx_scale_code(e, INFINITY), 0xFF);
    EXPECT_EQ(mx_scale_code(e, std::nanf("")), 0xFF);
  }
}

TEST(Mx, SaturatesInsideTheBlockAndNaNPoisonsIt) {
  // amax = 1.99 * 2^8 = 509.44: shared exponent 0, so 509.44 saturates to 448.
  float v[3] = {509.44f, -500.0f, 1.0f};
  uint8_t codes[3];
  EXPECT_EQ(mx_quantize_block(MxElem::kE4M3, v, 3, codes), 127);
  EXPECT_EQ(codes[0], 0x7E);
  EXPECT_EQ(codes[1], 0xFE);
  EXPECT_EQ(codes[2], 0x38);  // 1.0 = 0.0111.000
  // E2M1: amax 7.9 -> shared 0; 7.9 saturates to 6 (code 7).
  float w[2] = {7.9f, -6.5f};
  EXPECT_EQ(mx_quantize_block(MxElem::kE2M1, w, 2, codes), 127);
  EXPECT_EQ(codes[0], 0x7);
  EXPECT_EQ(codes[1], 0xF);
  // One NaN makes the scale NaN and so the whole block.
  float n[3] = {1.0f, std::nanf(""), 2.0f};
  const uint8_t s = mx_quantize_block(MxElem::kE5M2, n, 3, codes);
  EXPECT_EQ(s, 0xFF);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(std::isnan(mx_decode(MxElem::kE5M2, codes[i], s)));
}

// A block worked by hand. E2M1, values {0.75, -1.5, 3, 12}: amax 12 = 1.5 * 2^3,
// shared exponent 3 - 2 = 1, scale byte 128 = 0x80, X = 2. V/X = {0.375, -0.75,
// 1.5, 6}: 0.375 lies between 0 and 0.5 (nearer 0.5) -> code 1; -0.75 is a tie
// between 0.5 (code 1, odd mantissa) and 1.0 (code 2, even) -> 1.0, negative:
// code 0xA; 1.5 -> code 3; 6 -> code 7. Packed low nibble first: 0xA1, 0x73.
TEST(Mx, HandCheckedE2M1Block) {
  const float v[4] = {0.75f, -1.5f, 3.0f, 12.0f};
  uint8_t codes[4], scales[1], packed[2];
  mx_quantize_row(MxElem::kE2M1, v, 4, codes, scales);
  EXPECT_EQ(scales[0], 0x80);
  EXPECT_EQ(codes[0], 0x1);
  EXPECT_EQ(codes[1], 0xA);
  EXPECT_EQ(codes[2], 0x3);
  EXPECT_EQ(codes[3], 0x7);
  mx_pack_e2m1(codes, 4, packed);
  EXPECT_EQ(packed[0], 0xA1);
  EXPECT_EQ(packed[1], 0x73);
  uint8_t back[4];
  mx_unpack_e2m1(packed, 4, back);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(back[i], codes[i]);
  float fq[4];
  mx_fake_quantize_row(MxElem::kE2M1, v, 4, fq);
  EXPECT_EQ(fq[0], 1.0f);
  EXPECT_EQ(fq[1], -2.0f);
  EXPECT_EQ(fq[2], 3.0f);
  EXPECT_EQ(fq[3], 12.0f);
}

// E4M3 by hand: {0.1, -3.0, 100.0}: amax 100 = 1.5625 * 2^6, shared 6 - 8 = -2,
// scale byte 125 = 0x7D, X = 1/4. V/X = {0.4, -12, 400}. 0.4 = 1.6 * 2^-2: mantissa
// 0.6 * 8 = 4.8 -> 5, exponent field -2 + 7 = 5: 0.0101.101 = 0x2D (0.40625).
// -12 = -1.5 * 2^3: 1.1010.100 = 0xD4. 400 = 1.5625 * 2^8: mantissa 4.5 -> tie,
// to even 4: 0.1111.100 = 0x7C (384).
TEST(Mx, HandCheckedE4M3Block) {
  const float v[3] = {0.1f, -3.0f, 100.0f};
  uint8_t codes[3], scales[1];
  mx_quantize_row(MxElem::kE4M3, v, 3, codes, scales);
  EXPECT_EQ(scales[0], 0x7D);
  EXPECT_EQ(codes[0], 0x2D);
  EXPECT_EQ(codes[1], 0xD4);
  EXPECT_EQ(codes[2], 0x7C);
  EXPECT_EQ(mx_decode(MxElem::kE4M3, 0x7C, 0x7D), 96.0f);
}

TEST(Mx, RowsWithAShortLastBlock) {
  std::vector<float> v(70);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i) - 20.0f;
  std::vector<uint8_t> codes(70), scales(3);
  mx_quantize_row(MxElem::kE4M3, v.data(), 70, codes.data(), scales.data());
  // Blocks: [-20, 11] amax 20 -> 4 - 8; [12, 43] amax 43 -> 5 - 8; [44, 49] amax 49 -> 5 - 8.
  EXPECT_EQ(scales[0], 123);
  EXPECT_EQ(scales[1], 124);
  EXPECT_EQ(scales[2], 124);
  // E4M3 keeps 3 mantissa bits: relative error at most 2^-4 for normals.
  for (size_t i = 0; i < v.size(); ++i)
    EXPECT_LE(std::fabs(mx_decode(MxElem::kE4M3, codes[i], scales[i / 32]) - v[i]), std::fabs(v[i]) / 16) << i;
}

}  // namespace
}  // namespace quanta
