// AVX2 versions of the quantized-Linear primitives (kernels/quant_linear.h).
//
// int8 x int8: _mm256_maddubs_epi16 multiplies unsigned by signed bytes, so the
// weight's magnitude goes in the unsigned operand and its sign moves onto the
// activation (_mm256_sign_epi8). With activations in [-127, 127] and weights in
// [-128, 127] every pair sum is at most 2 * 128 * 127 = 32512, inside int16:
// the result is exact. E4M3 weights widen to f32 through F16C: the bits
// s.eeee.mmm shifted to s.0eeee.mmm0000000 form the f16 of value * 2^-8
// (subnormals included), so one shift and one cvtph per 8 elements.
#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "quanta/core/dtype.h"
#include "quanta/kernels/quant_linear.h"

namespace quanta::kernels {
namespace {

inline int32_t hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

inline float hsum_ps(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// |w| (unsigned) times x carrying w's sign, summed in pairs then quads: 8 int32 lanes.
inline __m256i dot32(__m256i uw, __m256i w, __m256i x, __m256i ones16) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(uw, _mm256_sign_epi8(x, w)), ones16);
}

struct Avx2Dot {
  static __m256i acc(__m256i acc, __m256i uw, __m256i w, __m256i x) {
    return _mm256_add_epi32(acc, dot32(uw, w, x, _mm256_set1_epi16(1)));
  }
  static void prefetch(const int8_t*) {}
};

#include "quanta/kernels/x86/gemm_s8_body.h"

void gemm_s8_avx2(const GemmS8Args& a) { gemm_s8_blocks<Avx2Dot>(a); }

// 16 packed bytes -> 32 unsigned int4 (w + 8) in element order (pack_u4's layout).
inline __m256i u4x32(const uint8_t* p, __m256i mask) {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m256i both = _mm256_set_m128i(_mm_srli_epi16(b, 4), b);
  return _mm256_and_si256(both, mask);
}

// w + 8 in [0, 15] is the unsigned operand of maddubs and x in [-7, 7] the signed
// one: a pair sums to at most 2 * 15 * 7 = 210, so 128 blocks add up in int16
// (26880) before one widening to int32. No sign trick is needed.
void gemm_u4_tokens(const GemmS8Args& a, int64_t t_begin, int64_t t_end) {
  const __m256i ones16 = _mm256_set1_epi16(1), mask = _mm256_set1_epi8(0x0F);
  const auto* wb = reinterpret_cast<const uint8_t*>(a.w);
  const int64_t nblk = a.k / 32;
  constexpr int64_t kSpan = 128;  // blocks per int16 accumulation
  int64_t n = a.n0;
  for (; n + 2 <= a.n1; n += 2) {
    // Block b of the two rows: w0/w1 + b * bs (pairs packed by pack_rows2_u4 sit
    // 16 bytes apart and advance 32 bytes per block).
    const bool paired = n < a.rows2;
    const int64_t bs = paired ? 32 : 16;
    const uint8_t* w0 = wb + n * a.ldw;
    const uint8_t* w1 = paired ? w0 + 16 : w0 + a.ldw;
    int64_t t = t_begin;
    for (; t + 2 <= t_end; t += 2) {
      const int8_t* x0 = a.x + t * a.ldx;
      const int8_t* x1 = x0 + a.ldx;
      __m256i acc[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
      for (int64_t s0 = 0; s0 < nblk; s0 += kSpan) {
        __m256i h[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
        for (int64_t b = s0; b < std::min(nblk, s0 + kSpan); ++b) {
          const __m256i u0 = u4x32(w0 + b * bs, mask), u1 = u4x32(w1 + b * bs, mask);
          const __m256i xa = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x0 + b * 32));
          const __m256i xb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x1 + b * 32));
          h[0] = _mm256_add_epi16(h[0], _mm256_maddubs_epi16(u0, xa));
          h[1] = _mm256_add_epi16(h[1], _mm256_maddubs_epi16(u1, xa));
          h[2] = _mm256_add_epi16(h[2], _mm256_maddubs_epi16(u0, xb));
          h[3] = _mm256_add_epi16(h[3], _mm256_maddubs_epi16(u1, xb));
        }
        for (int i = 0; i < 4; ++i) acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(h[i], ones16));
      }
      a.out[t * a.ld_out + (n - a.n0)] = hsum_epi32(acc[0]);
      a.out[t * a.ld_out + (n + 1 - a.n0)] = hsum_epi32(acc[1]);
      a.out[(t + 1) * a.ld_out + (n - a.n0)] = hsum_epi32(acc[2]);
      a.out[(t + 1) * a.ld_out + (n + 1 - a.n0)] = hsum_epi32(acc[3]);
    }
    for (; t < t_end; ++t) {
      const int8_t* x0 = a.x + t * a.ldx;
      __m256i acc[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
      for (int64_t s0 = 0; s0 < nblk; s0 += kSpan) {
        __m256i h[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
        for (int64_t b = s0; b < std::min(nblk, s0 + kSpan); ++b) {
          const __m256i xa = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x0 + b * 32));
          h[0] = _mm256_add_epi16(h[0], _mm256_maddubs_epi16(u4x32(w0 + b * bs, mask), xa));
          h[1] = _mm256_add_epi16(h[1], _mm256_maddubs_epi16(u4x32(w1 + b * bs, mask), xa));
        }
        for (int i = 0; i < 2; ++i) acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(h[i], ones16));
      }
      a.out[t * a.ld_out + (n - a.n0)] = hsum_epi32(acc[0]);
      a.out[t * a.ld_out + (n + 1 - a.n0)] = hsum_epi32(acc[1]);
    }
  }
  for (; n < a.n1; ++n) {
    const bool paired = n < a.rows2;  // a range that ends inside a pair
    const int64_t bs = paired ? 32 : 16;
    const uint8_t* w0 = paired ? wb + (n & ~int64_t{1}) * a.ldw + (n & 1) * 16 : wb + n * a.ldw;
    for (int64_t t = t_begin; t < t_end; ++t) {
      const int8_t* x0 = a.x + t * a.ldx;
      __m256i acc = _mm256_setzero_si256();
      for (int64_t s0 = 0; s0 < nblk; s0 += kSpan) {
        __m256i h = _mm256_setzero_si256();
        for (int64_t b = s0; b < std::min(nblk, s0 + kSpan); ++b)
          h = _mm256_add_epi16(h, _mm256_maddubs_epi16(u4x32(w0 + b * bs, mask),
                                                        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x0 + b * 32))));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(h, ones16));
      }
      a.out[t * a.ld_out + (n - a.n0)] = hsum_epi32(acc);
    }
  }
}

void gemm_u4_avx2(const GemmS8Args& a) {
  constexpr int64_t kTokenBlock = 48;
  for (int64_t t0 = 0; t0 < a.n_tokens; t0 += kTokenBlock)
    gemm_u4_tokens(a, t0, std::min(a.n_tokens, t0 + kTokenBlock));
}

inline __m256 load_s8_as_ps(const int8_t* p) {
  int64_t v;
  std::memcpy(&v, p, 8);
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_cvtsi64_si128(v)));
}

void gemm_f32_s8_avx2(const GemmF32S8Args& a) {
  const int64_t k8 = a.k & ~int64_t{7};
  for (int64_t n = a.n0; n < a.n1; ++n) {
    const int8_t* wr = a.w + n * a.ldw;
    for (int64_t t = 0; t < a.n_tokens; ++t) {
      const float* xr = a.x + t * a.ldx;
      __m256 acc = _mm256_setzero_ps();
      for (int64_t k = 0; k < k8; k += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(xr + k), load_s8_as_ps(wr + k), acc);
      float s = hsum_ps(acc);
      for (int64_t k = k8; k < a.k; ++k) s += xr[k] * wr[k];
      a.out[t * a.ld_out + (n - a.n0)] = s;
    }
  }
}

// 8 E4M3 codes -> 8 f32 values times 2^-8. Each code is sign-extended to 16 bits
// and shifted left by 7: bit 15 is then the sign, bits 13..7 eeee.mmm, and only
// bit 14 (a copy of the sign) has to be cleared to make the f16 s.0eeee.mmm0000000.
inline __m256 e4m3x8_scaled(const uint8_t* p) {
  int64_t v;
  std::memcpy(&v, p, 8);
  const __m128i b = _mm_cvtepi8_epi16(_mm_cvtsi64_si128(v));
  return _mm256_cvtph_ps(_mm_and_si128(_mm_slli_epi16(b, 7), _mm_set1_epi16(static_cast<short>(0xBF80))));
}

// 2^(s - 127), NaN for 255 (as e8m0_to_f32), inline: it runs once per block of 32.
inline float e8m0(uint8_t s) {
  const uint32_t bits = s == 0 ? 0x00400000u : s == 255 ? 0x7FC00000u : uint32_t{s} << 23;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// x[0..n) . w[0..n), n a multiple of 32.
inline float dot_f32(const float* x, const float* w, int64_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
  for (int64_t k = 0; k < n; k += 32) {
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k), _mm256_load_ps(w + k), a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k + 8), _mm256_load_ps(w + k + 8), a1);
    a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k + 16), _mm256_load_ps(w + k + 16), a2);
    a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k + 24), _mm256_load_ps(w + k + 24), a3);
  }
  return hsum_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
}

// Aligned scratch for one decoded weight row.
struct RowBuffer {
  float* p = nullptr;
  explicit RowBuffer(int64_t n) { p = static_cast<float*>(std::aligned_alloc(32, static_cast<size_t>(n) * 4)); }
  ~RowBuffer() { std::free(p); }
};

// Decode steps (T <= 4 tokens): each 8 weights are widened in registers and meet
// the T tokens at once; a block's products are summed, then scaled by its E8M0
// scale (a power of two: exact). The sums stay in units of 2^-8 (the widening's
// factor) and are multiplied by 256 once at the end, so no scale overflows.
// block(row, b, w) widens block b of a row into w[0..4) as f32 times 2^-8 (fp8) or
// times 2 (fp4, the LUT's 2 * value): `unit` undoes it.
template <int T, typename Block>
void mx_rows_few_tokens(const GemmMxArgs& a, int64_t row_bytes, float unit, Block block) {
  const int64_t nb = a.n_in / 32;
  for (int64_t n = a.n0; n < a.n1; ++n) {
    const uint8_t* wr = a.w + n * row_bytes;
    const uint8_t* ws = a.w_scales + n * nb;
    __m256 acc[T];
    for (auto& v : acc) v = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      __m256 w[4];
      block(wr, b, w);
      const __m256 sc = _mm256_set1_ps(e8m0(ws[b]));
      for (int t = 0; t < T; ++t) {
        // Two independent chains per block: a chain of 4 FMAs (~20 cycles) per 32
        // weights was the bottleneck.
        const float* xb = a.x + t * a.n_in + b * 32;
        __m256 p0 = _mm256_mul_ps(w[0], _mm256_loadu_ps(xb)), p1 = _mm256_mul_ps(w[1], _mm256_loadu_ps(xb + 8));
        p0 = _mm256_fmadd_ps(w[2], _mm256_loadu_ps(xb + 16), p0);
        p1 = _mm256_fmadd_ps(w[3], _mm256_loadu_ps(xb + 24), p1);
        acc[t] = _mm256_fmadd_ps(_mm256_add_ps(p0, p1), sc, acc[t]);
      }
    }
    for (int t = 0; t < T; ++t) a.y[t * a.ldy + n] = hsum_ps(acc[t]) * unit;
  }
}

template <typename Block>
bool mx_few_tokens(const GemmMxArgs& a, int64_t row_bytes, float unit, Block block) {
  switch (a.n_tokens) {
    case 1: mx_rows_few_tokens<1>(a, row_bytes, unit, block); return true;
    case 2: mx_rows_few_tokens<2>(a, row_bytes, unit, block); return true;
    case 3: mx_rows_few_tokens<3>(a, row_bytes, unit, block); return true;
    case 4: mx_rows_few_tokens<4>(a, row_bytes, unit, block); return true;
    default: return false;
  }
}

// Prompts: each weight row is decoded once to f32 with its block scales folded in
// (a power of two: exact), then meets every token.
void gemm_f32_mxfp8_avx2(const GemmMxArgs& a) {
  auto block = [](const uint8_t* row, int64_t b, __m256* w) {
    for (int j = 0; j < 4; ++j) w[j] = e4m3x8_scaled(row + b * 32 + j * 8);
  };
  if (mx_few_tokens(a, a.n_in, 256.0f, block)) return;
  const int64_t nb = a.n_in / 32;
  RowBuffer row(a.n_in);
  for (int64_t n = a.n0; n < a.n1; ++n) {
    const uint8_t* wr = a.w + n * a.n_in;
    const uint8_t* ws = a.w_scales + n * nb;
    for (int64_t b = 0; b < nb; ++b) {
      const __m256 sc = _mm256_set1_ps(e8m0(ws[b]) * 256.0f);  // 256 undoes the f16 trick's 2^-8
      for (int j = 0; j < 32; j += 8)
        _mm256_store_ps(row.p + b * 32 + j, _mm256_mul_ps(e4m3x8_scaled(wr + b * 32 + j), sc));
    }
    for (int64_t t = 0; t < a.n_tokens; ++t) a.y[t * a.ldy + n] = dot_f32(a.x + t * a.n_in, row.p, a.n_in);
  }
}

// 16 packed bytes (32 E2M1 codes) -> 32 int8 values 2*e2m1, in element order.
inline __m256i e2m1x32_times2(const uint8_t* p, __m256i lut) {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i lo = _mm_and_si128(b, _mm_set1_epi8(0x0F));
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), _mm_set1_epi8(0x0F));
  const __m256i codes = _mm256_set_m128i(_mm_unpackhi_epi8(lo, hi), _mm_unpacklo_epi8(lo, hi));
  return _mm256_shuffle_epi8(lut, codes);
}

inline __m256i e2m1_lut() {
  const __m128i l = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kE2m1Times2));
  return _mm256_set_m128i(l, l);
}

// The decoders of the two MX kernels above, for tiles of rows (tile_gemm.h).
void dequant_mx_row_avx2(bool e4m3, const uint8_t* row, const uint8_t* scales, int64_t k0, int64_t len, float* out) {
  const __m256i lut = e2m1_lut();
  for (int64_t b = k0 / 32; b < (k0 + len) / 32; ++b, out += 32) {
    if (e4m3) {
      // 256 undoes the f16 trick's 2^-8, before the scale (2^127 * 256 would overflow).
      const __m256 sc = _mm256_set1_ps(e8m0(scales[b])), k256 = _mm256_set1_ps(256.0f);
      for (int j = 0; j < 32; j += 8)
        _mm256_storeu_ps(out + j, _mm256_mul_ps(_mm256_mul_ps(e4m3x8_scaled(row + b * 32 + j), k256), sc));
    } else {
      const __m256 sc = _mm256_set1_ps(e8m0(scales[b]) * 0.5f);  // the lookup holds 2 x e2m1
      const __m256i v = e2m1x32_times2(row + b * 16, lut);
      const __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
      const __m128i q[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
      for (int j = 0; j < 4; ++j)
        _mm256_storeu_ps(out + 8 * j, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q[j])), sc));
    }
  }
}

void gemm_f32_mxfp4_avx2(const GemmMxArgs& a) {
  const int64_t nb = a.n_in / 32;
  const __m256i lut = e2m1_lut();
  auto block = [&lut](const uint8_t* row, int64_t b, __m256* w) {
    const __m256i v = e2m1x32_times2(row + b * 16, lut);
    const __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
    w[0] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo));
    w[1] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)));
    w[2] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi));
    w[3] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)));
  };
  if (mx_few_tokens(a, a.n_in / 2, 0.5f, block)) return;
  alignas(32) int8_t wv[32];
  RowBuffer row(a.n_in);
  for (int64_t n = a.n0; n < a.n1; ++n) {
    const uint8_t* wr = a.w + n * (a.n_in / 2);
    const uint8_t* ws = a.w_scales + n * nb;
    for (int64_t b = 0; b < nb; ++b) {
      _mm256_store_si256(reinterpret_cast<__m256i*>(wv), e2m1x32_times2(wr + b * 16, lut));
      const __m256 sc = _mm256_set1_ps(e8m0(ws[b]) * 0.5f);  // the LUT holds 2 * value
      for (int j = 0; j < 32; j += 8) _mm256_store_ps(row.p + b * 32 + j, _mm256_mul_ps(load_s8_as_ps(wv + j), sc));
    }
    for (int64_t t = 0; t < a.n_tokens; ++t) a.y[t * a.ldy + n] = dot_f32(a.x + t * a.n_in, row.p, a.n_in);
  }
}

void gemm_mxfp4_mxfp4_avx2(const GemmMxArgs& a) {
  const int64_t nb = a.n_in / 32;
  const __m256i lut = e2m1_lut();
  const __m256i ones16 = _mm256_set1_epi16(1);
  // One weight row decoded to int8 (2 * value) and split into magnitude and sign
  // once, then met by every token.
  std::vector<__m256i> wabs(static_cast<size_t>(nb)), wsgn(static_cast<size_t>(nb));
  std::vector<float> wsc(static_cast<size_t>(nb));
  for (int64_t n = a.n0; n < a.n1; ++n) {
    const uint8_t* wr = a.w + n * (a.n_in / 2);
    for (int64_t b = 0; b < nb; ++b) {
      wsgn[b] = e2m1x32_times2(wr + b * 16, lut);
      wabs[b] = _mm256_sign_epi8(wsgn[b], wsgn[b]);
      wsc[b] = e8m0(a.w_scales[n * nb + b]) * 0.25f;  // the 0.25 undoes 2 * 2
    }
    for (int64_t t = 0; t < a.n_tokens; ++t) {
      const int8_t* xr = a.x_e2m1 + t * a.n_in;
      const uint8_t* xs = a.x_scales + t * nb;
      __m256 acc = _mm256_setzero_ps();
      for (int64_t b = 0; b < nb; ++b) {
        const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xr + b * 32));
        const __m256i p = dot32(wabs[b], wsgn[b], x, ones16);  // exact: |2x|, |2w| <= 12
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(e8m0(xs[b]) * wsc[b]), acc);
      }
      a.y[t * a.ldy + n] = hsum_ps(acc);
    }
  }
}

}  // namespace

const QuantLinearKernels& quant_linear_avx2_table() {
  static const QuantLinearKernels table{Isa::kAvx2, gemm_s8_avx2, gemm_u4_avx2, gemm_f32_s8_avx2, gemm_f32_mxfp8_avx2,
                                        gemm_f32_mxfp4_avx2, gemm_mxfp4_mxfp4_avx2, dequant_mx_row_avx2};
  return table;
}

}  // namespace quanta::kernels
