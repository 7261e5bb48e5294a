#include "quanta/format/ggml_types.h"

#include <array>
#include <bit>
#include <cmath>
#include <cstring>

#include "quanta/core/error.h"

// Products and sums below must round one operation at a time, as numpy (gguf-py)
// and ggml's scalar code do: a fused multiply-add would change low bits. GCC does
// not contract in ISO mode (-std=c++20) and the baseline x86-64 build has no FMA;
// clang contracts within an expression unless told not to.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

namespace quanta::format {

namespace {

static_assert(std::endian::native == std::endian::little,
              "block fields are read as little-endian host integers");

// ---------------------------------------------------------------------------
// Block layouts, field for field as ggml/src/ggml-common.h declares them.
// "half" fields are IEEE binary16 bits. QK_K = 256.

constexpr int kQK = 32;    // elements per legacy block (QK4_0 ... QK8_1, QK4_NL, QK_MXFP4)
constexpr int kQK_K = 256; // elements per K-quant / i-quant super-block

struct BlockQ4_0 { uint16_t d; uint8_t qs[16]; };
struct BlockQ4_1 { uint16_t d; uint16_t m; uint8_t qs[16]; };
struct BlockQ5_0 { uint16_t d; uint8_t qh[4]; uint8_t qs[16]; };
struct BlockQ5_1 { uint16_t d; uint16_t m; uint8_t qh[4]; uint8_t qs[16]; };
struct BlockQ8_0 { uint16_t d; int8_t qs[32]; };
struct BlockQ8_1 { uint16_t d; uint16_t s; int8_t qs[32]; };
struct BlockQ2_K { uint8_t scales[16]; uint8_t qs[64]; uint16_t d; uint16_t dmin; };
struct BlockQ3_K { uint8_t hmask[32]; uint8_t qs[64]; uint8_t scales[12]; uint16_t d; };
struct BlockQ4_K { uint16_t d; uint16_t dmin; uint8_t scales[12]; uint8_t qs[128]; };
struct BlockQ5_K { uint16_t d; uint16_t dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; };
struct BlockQ6_K { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint16_t d; };
struct BlockQ8_K { float d; int8_t qs[256]; int16_t bsums[16]; };
struct BlockIQ2_XXS { uint16_t d; uint8_t qs[64]; };  // ggml: uint16_t qs[32], read as u32 pairs
struct BlockIQ2_XS { uint16_t d; uint16_t qs[32]; uint8_t scales[8]; };
struct BlockIQ2_S { uint16_t d; uint8_t qs[64]; uint8_t qh[8]; uint8_t scales[8]; };
struct BlockIQ3_XXS { uint16_t d; uint8_t qs[96]; };
struct BlockIQ3_S { uint16_t d; uint8_t qs[64]; uint8_t qh[8]; uint8_t signs[32]; uint8_t scales[4]; };
struct BlockIQ1_S { uint16_t d; uint8_t qs[32]; uint16_t qh[8]; };
struct BlockIQ1_M { uint8_t qs[32]; uint8_t qh[16]; uint8_t scales[8]; };  // d is spread over scales
struct BlockIQ4_NL { uint16_t d; uint8_t qs[16]; };
struct BlockIQ4_XS { uint16_t d; uint16_t scales_h; uint8_t scales_l[4]; uint8_t qs[128]; };
struct BlockTQ1_0 { uint8_t qs[48]; uint8_t qh[4]; uint16_t d; };
struct BlockTQ2_0 { uint8_t qs[64]; uint16_t d; };
struct BlockMXFP4 { uint8_t e; uint8_t qs[16]; };
struct BlockNVFP4 { uint8_t d[4]; uint8_t qs[32]; };
struct BlockQ1_0 { uint16_t d; uint8_t qs[16]; };  // 128 elements, 1 bit each
struct BlockQ2_0 { uint16_t d; uint8_t qs[16]; };  // 64 elements, 2 bits each

// Sizes from ggml-common.h's own static_asserts (and gguf-py's GGML_QUANT_SIZES,
// except Q8_1, which gguf-py lists as 40 bytes: a stale entry; it never appears in files).
static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ5_0) == 22 && sizeof(BlockQ5_1) == 24);
static_assert(sizeof(BlockQ8_0) == 34 && sizeof(BlockQ8_1) == 36);
static_assert(sizeof(BlockQ2_K) == 84 && sizeof(BlockQ3_K) == 110 && sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210 && sizeof(BlockQ8_K) == 292);
static_assert(sizeof(BlockIQ2_XXS) == 66 && sizeof(BlockIQ2_XS) == 74 && sizeof(BlockIQ2_S) == 82);
static_assert(sizeof(BlockIQ3_XXS) == 98 && sizeof(BlockIQ3_S) == 110);
static_assert(sizeof(BlockIQ1_S) == 50 && sizeof(BlockIQ1_M) == 56);
static_assert(sizeof(BlockIQ4_NL) == 18 && sizeof(BlockIQ4_XS) == 136);
static_assert(sizeof(BlockTQ1_0) == 54 && sizeof(BlockTQ2_0) == 66);
static_assert(sizeof(BlockMXFP4) == 17 && sizeof(BlockNVFP4) == 36);
static_assert(sizeof(BlockQ1_0) == 18 && sizeof(BlockQ2_0) == 18);

// ---------------------------------------------------------------------------
// Value tables (format facts).

#include "quanta/format/ggml_grids.inc"

// kvalues_iq4nl (ggml-common.h; gguf-py IQ4_NL.kvalues).
constexpr int8_t kValuesIq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                     1, 13, 25, 38, 53, 69, 89, 113};
// kvalues_mxfp4: the E2M1 values doubled, so they are integers; the block scale
// is halved to match (ggml-common.h; gguf-py MXFP4.kvalues).
constexpr int8_t kValuesFp4[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

// ksigns_iq2xs (ggml-common.h): 7 stored sign bits plus an 8th that makes the
// number of negative elements even.
constexpr uint8_t ksigns(uint32_t i) {
  return static_cast<uint8_t>(i | ((std::popcount(i) & 1u) << 7));
}

constexpr float kIq1Delta = 0.125f;  // IQ1S_DELTA = IQ1M_DELTA

// Element j of an 8-element 2-bit grid entry, and of a 4-element 3-bit one.
template <typename T, size_t N>
float grid8(const T (&map)[N], uint16_t code, int j) {
  return static_cast<float>(map[(code >> (2 * j)) & 3]);
}
template <typename T, size_t N>
float grid4(const T (&map)[N], uint16_t code, int j) {
  return static_cast<float>(map[(code >> (4 * j)) & 7]);
}

uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

float f16(uint16_t h) { return f16_to_f32(h); }

// ggml_e8m0_to_fp32_half: 2^(e - 128). ggml builds it from float bits and has no
// NaN code, so e = 0xFF gives 2^127 where OCP MX (and e8m0_to_f32) say NaN; files
// are read as ggml and gguf-py read them.
float e8m0_half(uint8_t e) {
  if (e == 0xFF) return std::ldexp(1.0f, 127);
  return e8m0_to_f32(e) * 0.5f;  // exact: 2^-127 * 0.5 = 2^-128 is a float subnormal
}

// ggml_ue4m3_to_fp32 (ggml-impl.h, gguf-py NVFP4.ue4m3_to_fp32): unsigned e4m3,
// exponent bias 7; 0 and 0x7F decode to 0; bit 7 is ignored otherwise; the result
// is halved to match the doubled kvalues. Every step is exact.
float ue4m3_half(uint8_t x) {
  if (x == 0 || x == 0x7F) return 0.0f;
  const int exp = (x >> 3) & 0xF;
  const int man = x & 0x7;
  const float raw = exp == 0 ? std::ldexp(static_cast<float>(man), -9)
                             : std::ldexp(1.0f + static_cast<float>(man) / 8.0f, exp - 7);
  return raw * 0.5f;
}

// ---------------------------------------------------------------------------
// One block each. y receives block_size floats. Operation order follows gguf-py's
// quants.py (which follows ggml-quants.c's dequantize_row_*).

void dq(const BlockQ4_0& b, float* y) {
  const float d = f16(b.d);
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>((b.qs[j] & 0x0F) - 8);
    y[j + 16] = d * static_cast<float>((b.qs[j] >> 4) - 8);
  }
}

void dq(const BlockQ4_1& b, float* y) {
  const float d = f16(b.d), m = f16(b.m);
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>(b.qs[j] & 0x0F) + m;
    y[j + 16] = d * static_cast<float>(b.qs[j] >> 4) + m;
  }
}

// Q5_0/Q5_1: the 5th bit of element j (0..31) is bit j of qh read as a u32.
void dq(const BlockQ5_0& b, float* y) {
  const float d = f16(b.d);
  const uint32_t qh = load_u32(b.qh);
  for (int j = 0; j < 16; ++j) {
    const int lo = (b.qs[j] & 0x0F) | static_cast<int>(((qh >> j) & 1u) << 4);
    const int hi = (b.qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
    y[j] = d * static_cast<float>(lo - 16);
    y[j + 16] = d * static_cast<float>(hi - 16);
  }
}

void dq(const BlockQ5_1& b, float* y) {
  const float d = f16(b.d), m = f16(b.m);
  const uint32_t qh = load_u32(b.qh);
  for (int j = 0; j < 16; ++j) {
    const int lo = (b.qs[j] & 0x0F) | static_cast<int>(((qh >> j) & 1u) << 4);
    const int hi = (b.qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
    y[j] = d * static_cast<float>(lo) + m;
    y[j + 16] = d * static_cast<float>(hi) + m;
  }
}

void dq(const BlockQ8_0& b, float* y) {
  const float d = f16(b.d);
  for (int j = 0; j < kQK; ++j) y[j] = d * static_cast<float>(b.qs[j]);
}

// The s field (d * sum of qs) only serves activation dot products.
void dq(const BlockQ8_1& b, float* y) {
  const float d = f16(b.d);
  for (int j = 0; j < kQK; ++j) y[j] = d * static_cast<float>(b.qs[j]);
}

// Element 128h + 32j + l: 2 bits at shift 2j of qs[32h + l]; 16 sub-blocks of 16
// with a 4-bit scale (low nibble) and 4-bit min (high nibble) each.
void dq(const BlockQ2_K& b, float* y) {
  const float d = f16(b.d), dmin = f16(b.dmin);
  for (int h = 0; h < 2; ++h) {
    for (int j = 0; j < 4; ++j) {
      for (int l = 0; l < 32; ++l) {
        const int e = 128 * h + 32 * j + l;
        const uint8_t sc = b.scales[e / 16];
        const float dl = d * static_cast<float>(sc & 0x0F);
        const float ml = dmin * static_cast<float>(sc >> 4);
        const int q = (b.qs[32 * h + l] >> (2 * j)) & 3;
        y[e] = dl * static_cast<float>(q) - ml;
      }
    }
  }
}

// Sixteen 6-bit signed scales: low 4 bits in scales[0..7] (nibble s / 8), high 2 bits
// in scales[8 + s % 4] at shift 2 * (s / 4). Element 128h + 32j + l: 2 low bits at
// shift 2j of qs[32h + l]; the high bit (4h + j) of hmask[l] set means +0, clear -4.
void dq(const BlockQ3_K& b, float* y) {
  const float d = f16(b.d);
  int scale[16];
  for (int s = 0; s < 16; ++s) {
    const int low4 = s < 8 ? (b.scales[s] & 0x0F) : (b.scales[s - 8] >> 4);
    const int high2 = (b.scales[8 + s % 4] >> (2 * (s / 4))) & 3;
    scale[s] = (low4 | (high2 << 4)) - 32;
  }
  for (int h = 0; h < 2; ++h) {
    for (int j = 0; j < 4; ++j) {
      for (int l = 0; l < 32; ++l) {
        const int e = 128 * h + 32 * j + l;
        const int low = (b.qs[32 * h + l] >> (2 * j)) & 3;
        const bool high = (b.hmask[l] >> (4 * h + j)) & 1;
        const float dl = d * static_cast<float>(scale[e / 16]);
        y[e] = dl * static_cast<float>(low - (high ? 0 : 4));
      }
    }
  }
}

// get_scale_min_k4 (ggml-quants.c): eight 6-bit scales and mins in 12 bytes.
void scale_min_k4(int j, const uint8_t* q, int* sc, int* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// 64-element chunk c: low nibbles of qs[32c..] with sub-block 2c, high nibbles with 2c+1.
void dq(const BlockQ4_K& b, float* y) {
  const float d = f16(b.d), dmin = f16(b.dmin);
  for (int c = 0; c < 4; ++c) {
    for (int half = 0; half < 2; ++half) {
      int sc, m;
      scale_min_k4(2 * c + half, b.scales, &sc, &m);
      const float dl = d * static_cast<float>(sc);
      const float ml = dmin * static_cast<float>(m);
      for (int l = 0; l < 32; ++l) {
        const int q = (b.qs[32 * c + l] >> (4 * half)) & 0x0F;
        y[64 * c + 32 * half + l] = dl * static_cast<float>(q) - ml;
      }
    }
  }
}

// As Q4_K, with the 5th bit of sub-block s's element l at bit s of qh[l].
void dq(const BlockQ5_K& b, float* y) {
  const float d = f16(b.d), dmin = f16(b.dmin);
  for (int c = 0; c < 4; ++c) {
    for (int half = 0; half < 2; ++half) {
      const int s = 2 * c + half;
      int sc, m;
      scale_min_k4(s, b.scales, &sc, &m);
      const float dl = d * static_cast<float>(sc);
      const float ml = dmin * static_cast<float>(m);
      for (int l = 0; l < 32; ++l) {
        const int q = ((b.qs[32 * c + l] >> (4 * half)) & 0x0F) | (((b.qh[l] >> s) & 1) << 4);
        y[64 * c + 32 * half + l] = dl * static_cast<float>(q) - ml;
      }
    }
  }
}

// Element 128h + 32c + l (c = 0..3): low 4 bits from ql[64h + 32(c%2) + l] at shift
// 4(c/2), high 2 bits from qh[32h + l] at shift 2c; minus 32; int8 scale per 16.
void dq(const BlockQ6_K& b, float* y) {
  const float d = f16(b.d);
  for (int h = 0; h < 2; ++h) {
    for (int c = 0; c < 4; ++c) {
      for (int l = 0; l < 32; ++l) {
        const int e = 128 * h + 32 * c + l;
        const int low = (b.ql[64 * h + 32 * (c % 2) + l] >> (4 * (c / 2))) & 0x0F;
        const int high = (b.qh[32 * h + l] >> (2 * c)) & 3;
        const float dl = d * static_cast<float>(b.scales[e / 16]);
        y[e] = dl * static_cast<float>((low | (high << 4)) - 32);
      }
    }
  }
}

// Activation-side type (ggml-quants.c dequantize_row_q8_K); bsums are not needed.
void dq(const BlockQ8_K& b, float* y) {
  for (int j = 0; j < kQK_K; ++j) y[j] = b.d * static_cast<float>(b.qs[j]);
}

// Sub-block ib (32 elements) takes 8 bytes as two u32: the 4 bytes of the first are
// grid indices (8 elements each); the second holds four 7-bit sign indices and a
// 4-bit scale in its top bits.
void dq(const BlockIQ2_XXS& b, float* y) {
  const float d = f16(b.d);
  for (int ib = 0; ib < 8; ++ib) {
    const uint32_t idx = load_u32(b.qs + 8 * ib);
    const uint32_t aux = load_u32(b.qs + 8 * ib + 4);
    const float db = d * (0.5f + static_cast<float>(aux >> 28)) * 0.25f;
    for (int l = 0; l < 4; ++l) {
      const uint16_t code = kIq2xxsGrid[(idx >> (8 * l)) & 0xFF];
      const uint8_t signs = ksigns((aux >> (7 * l)) & 127);
      for (int j = 0; j < 8; ++j) {
        const float sign = (signs >> j) & 1 ? -1.0f : 1.0f;
        y[32 * ib + 8 * l + j] = db * grid8(kIq2xxsGridMap, code, j) * sign;
      }
    }
  }
}

// Each u16 of qs: 9-bit grid index, 7-bit sign index. Groups 0-1 of sub-block ib
// scale with the low nibble of scales[ib], groups 2-3 with the high nibble.
void dq(const BlockIQ2_XS& b, float* y) {
  const float d = f16(b.d);
  for (int ib = 0; ib < 8; ++ib) {
    for (int l = 0; l < 4; ++l) {
      const int s = (b.scales[ib] >> (l < 2 ? 0 : 4)) & 0x0F;
      const float db = d * (0.5f + static_cast<float>(s)) * 0.25f;
      const uint16_t q = b.qs[4 * ib + l];
      const uint16_t code = kIq2xsGrid[q & 511];
      const uint8_t signs = ksigns(q >> 9);
      for (int j = 0; j < 8; ++j) {
        const float sign = (signs >> j) & 1 ? -1.0f : 1.0f;
        y[32 * ib + 8 * l + j] = db * grid8(kIq2xsGridMap, code, j) * sign;
      }
    }
  }
}

// qs[0..31]: low 8 bits of the 10-bit grid indices; qs[32..63]: one sign byte per
// 8 elements; qh[ib] bits 2l..2l+1: high bits of group l's index. Scales as IQ2_XS.
void dq(const BlockIQ2_S& b, float* y) {
  const float d = f16(b.d);
  for (int ib = 0; ib < 8; ++ib) {
    for (int l = 0; l < 4; ++l) {
      const int g = 4 * ib + l;
      const int s = (b.scales[ib] >> (l < 2 ? 0 : 4)) & 0x0F;
      const float db = d * (0.5f + static_cast<float>(s)) * 0.25f;
      const uint16_t code = kIq2sGrid[b.qs[g] | (((b.qh[ib] >> (2 * l)) & 3) << 8)];
      const uint8_t signs = b.qs[32 + g];
      for (int j = 0; j < 8; ++j) {
        const float sign = (signs >> j) & 1 ? -1.0f : 1.0f;
        y[32 * ib + 8 * l + j] = db * grid8(kIq2sGridMap, code, j) * sign;
      }
    }
  }
}

// qs[0..63]: grid indices (4 elements each); qs[64..95]: per sub-block a u32 with
// four 7-bit sign indices and a 4-bit scale in its top bits.
void dq(const BlockIQ3_XXS& b, float* y) {
  const float d = f16(b.d);
  for (int ib = 0; ib < 8; ++ib) {
    const uint32_t aux = load_u32(b.qs + 64 + 4 * ib);
    const float db = d * (0.5f + static_cast<float>(aux >> 28)) * 0.5f;
    for (int l = 0; l < 4; ++l) {
      const uint8_t signs = ksigns((aux >> (7 * l)) & 127);
      const uint16_t code1 = kIq3xxsGrid[b.qs[8 * ib + 2 * l]];
      const uint16_t code2 = kIq3xxsGrid[b.qs[8 * ib + 2 * l + 1]];
      for (int j = 0; j < 4; ++j) {
        const float sign1 = (signs >> j) & 1 ? -1.0f : 1.0f;
        const float sign2 = (signs >> (j + 4)) & 1 ? -1.0f : 1.0f;
        y[32 * ib + 8 * l + j] = db * grid4(kIq3xxsGridMap, code1, j) * sign1;
        y[32 * ib + 8 * l + 4 + j] = db * grid4(kIq3xxsGridMap, code2, j) * sign2;
      }
    }
  }
}

// 9-bit grid indices: qs[k] plus bit k % 8 of qh[k / 8]; sign bytes used directly;
// sub-block scale = nibble ib % 2 of scales[ib / 2], db = d * (1 + 2s).
void dq(const BlockIQ3_S& b, float* y) {
  const float d = f16(b.d);
  for (int ib = 0; ib < 8; ++ib) {
    const int s = (b.scales[ib / 2] >> (4 * (ib % 2))) & 0x0F;
    const float db = d * static_cast<float>(1 + 2 * s);
    for (int l = 0; l < 4; ++l) {
      const int k = 8 * ib + 2 * l;
      const uint16_t code1 = kIq3sGrid[b.qs[k] | (((b.qh[ib] >> (2 * l)) & 1) << 8)];
      const uint16_t code2 = kIq3sGrid[b.qs[k + 1] | (((b.qh[ib] >> (2 * l + 1)) & 1) << 8)];
      const uint8_t signs = b.signs[4 * ib + l];
      for (int j = 0; j < 4; ++j) {
        const float sign1 = (signs >> j) & 1 ? -1.0f : 1.0f;
        const float sign2 = (signs >> (j + 4)) & 1 ? -1.0f : 1.0f;
        y[32 * ib + 8 * l + j] = db * grid4(kIq3sGridMap, code1, j) * sign1;
        y[32 * ib + 8 * l + 4 + j] = db * grid4(kIq3sGridMap, code2, j) * sign2;
      }
    }
  }
}

// qh[ib]: bits 3l..3l+2 = high bits of group l's 11-bit index, bits 12-14 = scale,
// bit 15 = sign of the delta added to every grid value.
void dq(const BlockIQ1_S& b, float* y) {
  const float d = f16(b.d);
  for (int ib = 0; ib < 8; ++ib) {
    const uint16_t qh = b.qh[ib];
    const float dl = d * static_cast<float>(2 * ((qh >> 12) & 7) + 1);
    const float delta = (qh & 0x8000) ? -kIq1Delta : kIq1Delta;
    for (int l = 0; l < 4; ++l) {
      const uint16_t code = kIq1sGrid[b.qs[4 * ib + l] | (((qh >> (3 * l)) & 7) << 8)];
      for (int j = 0; j < 8; ++j) {
        y[32 * ib + 8 * l + j] = dl * (grid8(kIq1sGridMap, code, j) + delta);
      }
    }
  }
}

// The f16 super-scale is the top nibbles of the four u16 scale words; each word holds
// four 3-bit sub-scales (two sub-blocks, two halves each). qh nibble per group:
// bits 0-2 = index high bits, bit 3 = delta sign.
void dq(const BlockIQ1_M& b, float* y) {
  uint16_t sc[4];
  std::memcpy(sc, b.scales, sizeof(sc));
  const uint16_t d_bits = static_cast<uint16_t>((sc[0] >> 12) | ((sc[1] >> 8) & 0x00F0) |
                                                ((sc[2] >> 4) & 0x0F00) | (sc[3] & 0xF000));
  const float d = f16(d_bits);
  for (int ib = 0; ib < 8; ++ib) {
    const int shift = 6 * (ib % 2);
    const float dl1 = d * static_cast<float>(2 * ((sc[ib / 2] >> shift) & 7) + 1);
    const float dl2 = d * static_cast<float>(2 * ((sc[ib / 2] >> (shift + 3)) & 7) + 1);
    for (int l = 0; l < 4; ++l) {
      const int g = 4 * ib + l;
      const int nib = (b.qh[g / 2] >> (4 * (g % 2))) & 0x0F;
      const uint16_t code = kIq1sGrid[b.qs[g] | ((nib & 7) << 8)];
      const float delta = (nib & 8) ? -kIq1Delta : kIq1Delta;
      const float dl = l < 2 ? dl1 : dl2;
      for (int j = 0; j < 8; ++j) {
        y[32 * ib + 8 * l + j] = dl * (grid8(kIq1sGridMap, code, j) + delta);
      }
    }
  }
}

void dq(const BlockIQ4_NL& b, float* y) {
  const float d = f16(b.d);
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>(kValuesIq4nl[b.qs[j] & 0x0F]);
    y[j + 16] = d * static_cast<float>(kValuesIq4nl[b.qs[j] >> 4]);
  }
}

// Sub-block ib: 6-bit scale = nibble ib % 2 of scales_l[ib / 2] | bits 2ib..2ib+1 of
// scales_h << 4, minus 32; its 16 bytes hold elements j (low) and j + 16 (high).
void dq(const BlockIQ4_XS& b, float* y) {
  const float d = f16(b.d);
  for (int ib = 0; ib < 8; ++ib) {
    const int ls = ((b.scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0F) | (((b.scales_h >> (2 * ib)) & 3) << 4);
    const float dl = d * static_cast<float>(ls - 32);
    for (int j = 0; j < 16; ++j) {
      y[32 * ib + j] = dl * static_cast<float>(kValuesIq4nl[b.qs[16 * ib + j] & 0x0F]);
      y[32 * ib + 16 + j] = dl * static_cast<float>(kValuesIq4nl[b.qs[16 * ib + j] >> 4]);
    }
  }
}

// Base-3 packing: a byte holds 5 (qs) or 4 (qh) trits as a fixed-point fraction;
// trit n is ((u8)(byte * 3^n) * 3) >> 8, the u8 product wrapping mod 256.
void dq(const BlockTQ1_0& b, float* y) {
  static constexpr uint8_t kPow3[5] = {1, 3, 9, 27, 81};
  const float d = f16(b.d);
  auto trit = [](uint8_t byte, int n) {
    const uint8_t q = static_cast<uint8_t>(byte * kPow3[n]);
    return ((q * 3) >> 8) - 1;
  };
  for (int n = 0; n < 5; ++n) {
    for (int m = 0; m < 32; ++m) y[32 * n + m] = d * static_cast<float>(trit(b.qs[m], n));
  }
  for (int n = 0; n < 5; ++n) {
    for (int m = 0; m < 16; ++m) y[160 + 16 * n + m] = d * static_cast<float>(trit(b.qs[32 + m], n));
  }
  for (int n = 0; n < 4; ++n) {
    for (int m = 0; m < 4; ++m) y[240 + 4 * n + m] = d * static_cast<float>(trit(b.qh[m], n));
  }
}

// Element 128c + 32l + m: 2 bits at shift 2l of qs[32c + m], minus 1.
void dq(const BlockTQ2_0& b, float* y) {
  const float d = f16(b.d);
  for (int c = 0; c < 2; ++c) {
    for (int l = 0; l < 4; ++l) {
      for (int m = 0; m < 32; ++m) {
        const int q = (b.qs[32 * c + m] >> (2 * l)) & 3;
        y[128 * c + 32 * l + m] = d * static_cast<float>(q - 1);
      }
    }
  }
}

void dq(const BlockMXFP4& b, float* y) {
  const float d = e8m0_half(b.e);
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>(kValuesFp4[b.qs[j] & 0x0F]);
    y[j + 16] = d * static_cast<float>(kValuesFp4[b.qs[j] >> 4]);
  }
}

// Four sub-blocks of 16: sub-block s uses qs[8s..8s+7], low nibble = element j,
// high nibble = element j + 8, scale d[s].
void dq(const BlockNVFP4& b, float* y) {
  for (int s = 0; s < 4; ++s) {
    const float d = ue4m3_half(b.d[s]);
    for (int j = 0; j < 8; ++j) {
      y[16 * s + j] = d * static_cast<float>(kValuesFp4[b.qs[8 * s + j] & 0x0F]);
      y[16 * s + 8 + j] = d * static_cast<float>(kValuesFp4[b.qs[8 * s + j] >> 4]);
    }
  }
}

// Bit j (LSB first) of qs[j / 8]: +d if set, -d if clear.
void dq(const BlockQ1_0& b, float* y) {
  const float d = f16(b.d);
  for (int j = 0; j < 128; ++j) y[j] = ((b.qs[j / 8] >> (j % 8)) & 1) ? d : -d;
}

// Element j: 2 bits at shift 2(j % 4) of qs[j / 4], minus 1 (so -1, 0, 1, 2).
void dq(const BlockQ2_0& b, float* y) {
  const float d = f16(b.d);
  for (int j = 0; j < 64; ++j) {
    const int q = (b.qs[j / 4] >> (2 * (j % 4))) & 3;
    y[j] = static_cast<float>(q - 1) * d;
  }
}

// ---------------------------------------------------------------------------
// Row functions and the table.

using RowFn = void (*)(const uint8_t* src, float* dst, int64_t n_blocks);

// Copies each block out of the (possibly unaligned) source, then decodes it.
template <typename Block, int kElems>
void dq_row(const uint8_t* src, float* dst, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i) {
    Block b;
    std::memcpy(&b, src + i * static_cast<int64_t>(sizeof(Block)), sizeof(Block));
    dq(b, dst + i * kElems);
  }
}

template <typename T>
void plain_row(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, src + i * static_cast<int64_t>(sizeof(T)), sizeof(T));
    dst[i] = static_cast<float>(v);
  }
}

void f16_row(const uint8_t* src, float* dst, int64_t n) { convert_to_f32(DType::kF16, src, dst, static_cast<size_t>(n)); }
void bf16_row(const uint8_t* src, float* dst, int64_t n) { convert_to_f32(DType::kBF16, src, dst, static_cast<size_t>(n)); }
void f32_row(const uint8_t* src, float* dst, int64_t n) { std::memcpy(dst, src, static_cast<size_t>(n) * 4); }

struct TypeRow {
  GgmlTypeInfo info;
  RowFn dequant;  // nullptr: no reference dequantizer
};

// Every row() has a dequantizer (not `fn != nullptr`: GCC's UBSan build cannot evaluate that in a constant).
constexpr TypeRow row(GgmlType t, std::string_view name, int64_t block, size_t size, RowFn fn) {
  return {{t, name, block, size, false, true}, fn};
}
// A retired id. Sizes as the type had; it is refused before they matter.
constexpr TypeRow removed(GgmlType t, std::string_view name, int64_t block, size_t size) {
  return {{t, name, block, size, true, false}, nullptr};
}

#define QUANTA_BLOCK(T, Block, elems) row(GgmlType::k##T, #T, elems, sizeof(Block), &dq_row<Block, elems>)

// Ids and sizes: ggml/include/ggml.h (enum ggml_type), ggml/src/ggml.c (type_traits),
// ggml/src/ggml-common.h (blocks); see also shared/specs/checkpoint-formats-2.md §5.
constexpr std::array<TypeRow, kGgmlTypeCount> kTypes = {{
    row(GgmlType::kF32, "F32", 1, 4, &f32_row),
    row(GgmlType::kF16, "F16", 1, 2, &f16_row),
    QUANTA_BLOCK(Q4_0, BlockQ4_0, kQK),
    QUANTA_BLOCK(Q4_1, BlockQ4_1, kQK),
    removed(GgmlType::kQ4_2, "Q4_2", 16, 10),
    removed(GgmlType::kQ4_3, "Q4_3", 16, 12),
    QUANTA_BLOCK(Q5_0, BlockQ5_0, kQK),
    QUANTA_BLOCK(Q5_1, BlockQ5_1, kQK),
    QUANTA_BLOCK(Q8_0, BlockQ8_0, kQK),
    QUANTA_BLOCK(Q8_1, BlockQ8_1, kQK),
    QUANTA_BLOCK(Q2_K, BlockQ2_K, kQK_K),
    QUANTA_BLOCK(Q3_K, BlockQ3_K, kQK_K),
    QUANTA_BLOCK(Q4_K, BlockQ4_K, kQK_K),
    QUANTA_BLOCK(Q5_K, BlockQ5_K, kQK_K),
    QUANTA_BLOCK(Q6_K, BlockQ6_K, kQK_K),
    QUANTA_BLOCK(Q8_K, BlockQ8_K, kQK_K),
    QUANTA_BLOCK(IQ2_XXS, BlockIQ2_XXS, kQK_K),
    QUANTA_BLOCK(IQ2_XS, BlockIQ2_XS, kQK_K),
    QUANTA_BLOCK(IQ3_XXS, BlockIQ3_XXS, kQK_K),
    QUANTA_BLOCK(IQ1_S, BlockIQ1_S, kQK_K),
    QUANTA_BLOCK(IQ4_NL, BlockIQ4_NL, kQK),
    QUANTA_BLOCK(IQ3_S, BlockIQ3_S, kQK_K),
    QUANTA_BLOCK(IQ2_S, BlockIQ2_S, kQK_K),
    QUANTA_BLOCK(IQ4_XS, BlockIQ4_XS, kQK_K),
    row(GgmlType::kI8, "I8", 1, 1, &plain_row<int8_t>),
    row(GgmlType::kI16, "I16", 1, 2, &plain_row<int16_t>),
    row(GgmlType::kI32, "I32", 1, 4, &plain_row<int32_t>),
    row(GgmlType::kI64, "I64", 1, 8, &plain_row<int64_t>),
    row(GgmlType::kF64, "F64", 1, 8, &plain_row<double>),
    QUANTA_BLOCK(IQ1_M, BlockIQ1_M, kQK_K),
    row(GgmlType::kBF16, "BF16", 1, 2, &bf16_row),
    removed(GgmlType::kQ4_0_4_4, "Q4_0_4_4", kQK, 18),
    removed(GgmlType::kQ4_0_4_8, "Q4_0_4_8", kQK, 18),
    removed(GgmlType::kQ4_0_8_8, "Q4_0_8_8", kQK, 18),
    QUANTA_BLOCK(TQ1_0, BlockTQ1_0, kQK_K),
    QUANTA_BLOCK(TQ2_0, BlockTQ2_0, kQK_K),
    removed(GgmlType::kIQ4_NL_4_4, "IQ4_NL_4_4", kQK, 18),
    removed(GgmlType::kIQ4_NL_4_8, "IQ4_NL_4_8", kQK, 18),
    removed(GgmlType::kIQ4_NL_8_8, "IQ4_NL_8_8", kQK, 18),
    QUANTA_BLOCK(MXFP4, BlockMXFP4, kQK),
    QUANTA_BLOCK(NVFP4, BlockNVFP4, 64),
    // The pinned gguf-py cannot dequantize Q1_0 and Q2_0: their golden data comes
    // from ggml's own to_float (tools/make_gguf_fixtures.py --libggml).
    QUANTA_BLOCK(Q1_0, BlockQ1_0, 128),
    QUANTA_BLOCK(Q2_0, BlockQ2_0, 64),
}};

#undef QUANTA_BLOCK

constexpr bool table_is_indexed_by_id() {
  for (size_t i = 0; i < kTypes.size(); ++i) {
    if (static_cast<size_t>(kTypes[i].info.type) != i) return false;
  }
  return true;
}
static_assert(table_is_indexed_by_id(), "kTypes row i must describe type id i");

}  // namespace

const GgmlTypeInfo* ggml_type_info(uint32_t id) {
  return id < kTypes.size() ? &kTypes[id].info : nullptr;
}

std::string ggml_type_name(uint32_t id) {
  const GgmlTypeInfo* info = ggml_type_info(id);
  return info ? std::string(info->name) : "unknown type " + std::to_string(id);
}

std::optional<DType> ggml_type_dtype(GgmlType t) {
  switch (t) {
    case GgmlType::kF32: return DType::kF32;
    case GgmlType::kF16: return DType::kF16;
    case GgmlType::kBF16: return DType::kBF16;
    case GgmlType::kF64: return DType::kF64;
    case GgmlType::kI8: return DType::kI8;
    case GgmlType::kI16: return DType::kI16;
    case GgmlType::kI32: return DType::kI32;
    case GgmlType::kI64: return DType::kI64;
    default: return std::nullopt;
  }
}

size_t ggml_row_bytes(GgmlType t, int64_t n) {
  const GgmlTypeInfo& info = ggml_type_info(t);
  return static_cast<size_t>(n / info.block_size) * info.type_size;
}

void dequantize_row(GgmlType type, const void* src, float* dst, int64_t n) {
  const uint32_t id = static_cast<uint32_t>(type);
  if (id >= kTypes.size()) throw Error("cannot dequantize ggml " + ggml_type_name(id));
  const TypeRow& t = kTypes[id];
  if (!t.dequant) {
    throw Error("ggml type " + std::string(t.info.name) + " (id " + std::to_string(id) + ") " +
                (t.info.removed ? "was removed from ggml" : "has no reference dequantizer in quanta"));
  }
  if (n < 0 || n % t.info.block_size != 0) {
    throw Error("cannot dequantize " + std::to_string(n) + " elements of " + std::string(t.info.name) +
                ": not a multiple of its block size " + std::to_string(t.info.block_size));
  }
  const auto* bytes = static_cast<const uint8_t*>(src);
  // Plain types take an element count, block types a block count.
  t.dequant(bytes, dst, t.info.block_size == 1 ? n : n / t.info.block_size);
}

}  // namespace quanta::format
