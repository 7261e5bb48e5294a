// AVX2 dot products of ggml weight blocks with 16-bit activation blocks.
//
// Block layouts and formulas: checkpoint-formats-2.md §5.2-§5.3 (ggml-common.h,
// ggml-quants.c). Each kernel decodes 32 weights into 32 signed bytes in
// element order (nibbles, high bits, lookup tables), widens them to 16 bits
// and multiplies them with the activations by vpmaddwd into eight 32-bit sums,
// exact; one float multiply-add per 32 weights applies the weight scale times
// the activation scale. K-quants with 16-element sub-blocks multiply their
// codes by the sub-block scale while still 16-bit (at most 32 x 128, no
// overflow); offsets and minimums go through the activation block sums.
#include <immintrin.h>

#include <cstring>

#include "quanta/kernels/quant_dot.h"

namespace quanta::kernels {

namespace {

// (No AVX2 constants at namespace scope: their initialisers would run at start-up on any CPU.)

inline float f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline __m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// 16 bytes of a 32-element block: element j in the low nibble of byte j, element
// j + 16 in its high nibble -> 32 bytes 0..15 in element order.
inline __m256i nibbles(const uint8_t* qs) {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(b, 4), b), _mm256_set1_epi8(0x0F));
}

// Byte i = 0xFF where bit i of `bits` is set, else 0.
inline __m256i bits_to_bytes(uint32_t bits) {
  const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,  //
                                          2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
  const __m256i mask = _mm256_set1_epi64x(0x8040201008040201);
  const __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)), spread);
  return _mm256_cmpeq_epi8(_mm256_and_si256(v, mask), mask);
}

// 32 signed bytes (element order) times 32 activations: eight partial sums.
inline __m256i dot32(__m256i w, const int16_t* x) {
  const __m256i lo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(w));
  const __m256i hi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(w, 1));
  return _mm256_add_epi32(_mm256_madd_epi16(lo, load32(x)), _mm256_madd_epi16(hi, load32(x + 16)));
}

// Two halves of 16 signed bytes (elements 0..15 and 16..31) times 32 activations:
// cheaper than dot32 when a block's bytes are built as halves anyway (nibbles).
inline __m256i dot_halves(__m128i lo, __m128i hi, const int16_t* x) {
  return _mm256_add_epi32(_mm256_madd_epi16(_mm256_cvtepi8_epi16(lo), load32(x)),
                          _mm256_madd_epi16(_mm256_cvtepi8_epi16(hi), load32(x + 16)));
}

inline __m128i load16(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }
inline __m128i low4(__m128i b) { return _mm_and_si128(b, _mm_set1_epi8(0x0F)); }
inline __m128i high4(__m128i b) { return _mm_and_si128(_mm_srli_epi16(b, 4), _mm_set1_epi8(0x0F)); }

// The same with elements 0..15 multiplied by scale a and 16..31 by scale b.
inline __m256i dot32_scaled(__m256i w, int a, int b, const int16_t* x) {
  const __m256i lo = _mm256_mullo_epi16(_mm256_cvtepi8_epi16(_mm256_castsi256_si128(w)),
                                        _mm256_set1_epi16(static_cast<int16_t>(a)));
  const __m256i hi = _mm256_mullo_epi16(_mm256_cvtepi8_epi16(_mm256_extracti128_si256(w, 1)),
                                        _mm256_set1_epi16(static_cast<int16_t>(b)));
  return _mm256_add_epi32(_mm256_madd_epi16(lo, load32(x)), _mm256_madd_epi16(hi, load32(x + 16)));
}

inline __m256 fma_block(float scale, __m256i isum, __m256 acc) {
  return _mm256_fmadd_ps(_mm256_set1_ps(scale), _mm256_cvtepi32_ps(isum), acc);
}

inline int block_sum(const BlockQ16& x) { return x.sum[0] + x.sum[1]; }

// Sum over nb blocks of block(i, acc) -> acc, on two accumulators in turn: a
// single one would chain every block on the multiply-add latency.
template <typename F>
inline float sum_blocks(int64_t nb, F block) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 2 <= nb; i += 2) {
    acc0 = block(i, acc0);
    acc1 = block(i + 1, acc1);
  }
  if (i < nb) acc0 = block(i, acc0);
  return hsum(_mm256_add_ps(acc0, acc1));
}

// Four accumulators for the eight 32-element groups of a super-block.
struct Acc4 {
  __m256 v[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  void add(int k, float scale, __m256i isum) { v[k & 3] = fma_block(scale, isum, v[k & 3]); }
  float sum() const { return hsum(_mm256_add_ps(_mm256_add_ps(v[0], v[1]), _mm256_add_ps(v[2], v[3]))); }
};

// 16 signed bytes, for _mm_shuffle_epi8 lookups by nibble.
inline __m128i table16(const int8_t* v) { return load16(v); }

// kvalues_iq4nl (ggml-common.h) and kvalues_mxfp4 (= 2 x E2M1, ggml-common.h).
const int8_t kIq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
const int8_t kFp4x2[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

// 2^(e - 128): the E8M0 scale halved, because kFp4x2 holds doubled values.
inline float e8m0_half(uint8_t e) {
  uint32_t bits = e < 2 ? 0x00200000u << e : static_cast<uint32_t>(e - 1) << 23;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// ---- 32-element blocks ----

float dot_q4_0(int64_t n, const void* w, const BlockQ16* x) {  // { f16 d; u8 qs[16] }
  const uint8_t* base = static_cast<const uint8_t*>(w);
  return sum_blocks(n / 32, [&](int64_t i, __m256 acc) {
    const uint8_t* b = base + 18 * i;
    const __m128i raw = load16(b + 2), eight = _mm_set1_epi8(8);
    const __m256i isum = dot_halves(_mm_sub_epi8(low4(raw), eight), _mm_sub_epi8(high4(raw), eight), x[i].qs);
    return fma_block(f16(b) * x[i].d, isum, acc);
  });
}

float dot_q4_1(int64_t n, const void* w, const BlockQ16* x) {  // { f16 d; f16 m; u8 qs[16] }
  const uint8_t* base = static_cast<const uint8_t*>(w);
  float offsets = 0.0f;
  for (int64_t i = 0; i < n / 32; ++i) offsets += f16(base + 20 * i + 2) * x[i].d * static_cast<float>(block_sum(x[i]));
  return offsets + sum_blocks(n / 32, [&](int64_t i, __m256 acc) {
    const uint8_t* b = base + 20 * i;
    const __m128i raw = load16(b + 4);
    return fma_block(f16(b) * x[i].d, dot_halves(low4(raw), high4(raw), x[i].qs), acc);
  });
}

float dot_q5_0(int64_t n, const void* w, const BlockQ16* x) {  // { f16 d; u8 qh[4]; u8 qs[16] }
  const uint8_t* base = static_cast<const uint8_t*>(w);
  return sum_blocks(n / 32, [&](int64_t i, __m256 acc) {
    const uint8_t* b = base + 22 * i;
    uint32_t qh;
    std::memcpy(&qh, b + 2, 4);
    // (nib | bit << 4) - 16 == nib - 16 where the bit is clear: set the top nibble then.
    const __m256i high = _mm256_andnot_si256(bits_to_bytes(qh), _mm256_set1_epi8(static_cast<char>(0xF0)));
    return fma_block(f16(b) * x[i].d, dot32(_mm256_or_si256(nibbles(b + 6), high), x[i].qs), acc);
  });
}

float dot_q5_1(int64_t n, const void* w, const BlockQ16* x) {  // { f16 d; f16 m; u8 qh[4]; u8 qs[16] }
  const uint8_t* base = static_cast<const uint8_t*>(w);
  float offsets = 0.0f;
  for (int64_t i = 0; i < n / 32; ++i) offsets += f16(base + 24 * i + 2) * x[i].d * static_cast<float>(block_sum(x[i]));
  return offsets + sum_blocks(n / 32, [&](int64_t i, __m256 acc) {
    const uint8_t* b = base + 24 * i;
    uint32_t qh;
    std::memcpy(&qh, b + 4, 4);
    const __m256i q = _mm256_or_si256(nibbles(b + 8), _mm256_and_si256(bits_to_bytes(qh), _mm256_set1_epi8(0x10)));
    return fma_block(f16(b) * x[i].d, dot32(q, x[i].qs), acc);
  });
}

float dot_q8_0(int64_t n, const void* w, const BlockQ16* x) {  // { f16 d; i8 qs[32] }
  const uint8_t* base = static_cast<const uint8_t*>(w);
  return sum_blocks(n / 32, [&](int64_t i, __m256 acc) {
    const uint8_t* b = base + 34 * i;
    return fma_block(f16(b) * x[i].d, dot32(load32(b + 2), x[i].qs), acc);
  });
}

float dot_iq4_nl(int64_t n, const void* w, const BlockQ16* x) {  // { f16 d; u8 qs[16] }
  const uint8_t* base = static_cast<const uint8_t*>(w);
  const __m128i table = table16(kIq4nl);
  return sum_blocks(n / 32, [&](int64_t i, __m256 acc) {
    const uint8_t* b = base + 18 * i;
    const __m128i raw = load16(b + 2);
    const __m256i isum = dot_halves(_mm_shuffle_epi8(table, low4(raw)), _mm_shuffle_epi8(table, high4(raw)), x[i].qs);
    return fma_block(f16(b) * x[i].d, isum, acc);
  });
}

float dot_mxfp4(int64_t n, const void* w, const BlockQ16* x) {  // { u8 e; u8 qs[16] }
  const uint8_t* base = static_cast<const uint8_t*>(w);
  const __m128i table = table16(kFp4x2);
  return sum_blocks(n / 32, [&](int64_t i, __m256 acc) {
    const uint8_t* b = base + 17 * i;
    const __m128i raw = load16(b + 1);
    const __m256i isum = dot_halves(_mm_shuffle_epi8(table, low4(raw)), _mm_shuffle_epi8(table, high4(raw)), x[i].qs);
    return fma_block(e8m0_half(b[0]) * x[i].d, isum, acc);
  });
}

// ---- 256-element super-blocks: activation blocks 8 i .. 8 i + 7 ----

// Q4_K/Q5_K 6-bit scale and min of sub-block j (get_scale_min_k4).
inline void scale_min_k4(const uint8_t* s, int j, int& sc, int& m) {
  if (j < 4) {
    sc = s[j] & 63;
    m = s[j + 4] & 63;
  } else {
    sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
    m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

float dot_q2_k(int64_t n, const void* w, const BlockQ16* x) {  // { u8 scales[16]; u8 qs[64]; f16 d; f16 dmin }
  const uint8_t* b = static_cast<const uint8_t*>(w);
  const __m256i m3 = _mm256_set1_epi8(3);
  Acc4 acc;
  float mins = 0.0f;
  for (int64_t i = 0; i < n / 256; ++i, b += 84, x += 8) {
    const uint8_t* sc = b;
    const float d = f16(b + 80), dmin = f16(b + 82);
    for (int h = 0; h < 2; ++h) {
      const __m256i q = load32(b + 16 + 32 * h);
      for (int j = 0; j < 4; ++j) {
        const BlockQ16& xb = x[4 * h + j];
        const int s = 8 * h + 2 * j;
        const __m256i u = _mm256_and_si256(_mm256_srli_epi16(q, 2 * j), m3);
        acc.add(j, d * xb.d, dot32_scaled(u, sc[s] & 0xF, sc[s + 1] & 0xF, xb.qs));
        mins += dmin * xb.d * static_cast<float>((sc[s] >> 4) * xb.sum[0] + (sc[s + 1] >> 4) * xb.sum[1]);
      }
    }
  }
  return acc.sum() - mins;
}

float dot_q3_k(int64_t n, const void* w, const BlockQ16* x) {  // { u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d }
  const uint8_t* b = static_cast<const uint8_t*>(w);
  const __m256i m3 = _mm256_set1_epi8(3), m1 = _mm256_set1_epi8(1), four = _mm256_set1_epi8(4);
  Acc4 acc;
  for (int64_t i = 0; i < n / 256; ++i, b += 110, x += 8) {
    const uint8_t* s = b + 96;
    int sc[16];
    for (int k = 0; k < 16; ++k) {
      const int low4 = k < 8 ? s[k] & 0xF : s[k - 8] >> 4;
      const int high2 = (s[8 + k % 4] >> (2 * (k / 4))) & 3;
      sc[k] = (low4 | high2 << 4) - 32;
    }
    const float d = f16(b + 108);
    const __m256i hmask = load32(b);
    for (int h = 0; h < 2; ++h) {
      const __m256i q = load32(b + 32 + 32 * h);
      for (int j = 0; j < 4; ++j) {
        // q = low2 + 4 * hbit - 4
        const __m256i low = _mm256_and_si256(_mm256_srli_epi16(q, 2 * j), m3);
        const __m256i hbit = _mm256_and_si256(_mm256_srli_epi16(hmask, 4 * h + j), m1);
        const __m256i v = _mm256_sub_epi8(_mm256_or_si256(low, _mm256_slli_epi16(hbit, 2)), four);
        const BlockQ16& xb = x[4 * h + j];
        const int k = 8 * h + 2 * j;
        acc.add(j, d * xb.d, dot32_scaled(v, sc[k], sc[k + 1], xb.qs));
      }
    }
  }
  return acc.sum();
}

float dot_q4_k(int64_t n, const void* w, const BlockQ16* x) {  // { f16 d; f16 dmin; u8 scales[12]; u8 qs[128] }
  const uint8_t* b = static_cast<const uint8_t*>(w);
  Acc4 acc;
  float mins = 0.0f;
  for (int64_t i = 0; i < n / 256; ++i, b += 144, x += 8) {
    const float d = f16(b), dmin = f16(b + 2);
    for (int c = 0; c < 4; ++c) {
      int sc0, m0, sc1, m1;
      scale_min_k4(b + 4, 2 * c, sc0, m0);
      scale_min_k4(b + 4, 2 * c + 1, sc1, m1);
      // Bytes 32c .. 32c + 31: low nibbles are sub-block 2c, high nibbles 2c + 1.
      const __m128i r0 = load16(b + 16 + 32 * c), r1 = load16(b + 32 + 32 * c);
      const BlockQ16 &x0 = x[2 * c], &x1 = x[2 * c + 1];
      acc.add(2 * c, d * sc0 * x0.d, dot_halves(low4(r0), low4(r1), x0.qs));
      acc.add(2 * c + 1, d * sc1 * x1.d, dot_halves(high4(r0), high4(r1), x1.qs));
      mins += dmin * (m0 * x0.d * static_cast<float>(block_sum(x0)) + m1 * x1.d * static_cast<float>(block_sum(x1)));
    }
  }
  return acc.sum() - mins;
}

float dot_q5_k(int64_t n, const void* w, const BlockQ16* x) {  // { f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128] }
  const uint8_t* b = static_cast<const uint8_t*>(w);
  const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
  Acc4 acc;
  float mins = 0.0f;
  for (int64_t i = 0; i < n / 256; ++i, b += 176, x += 8) {
    const float d = f16(b), dmin = f16(b + 2);
    const __m256i qh = load32(b + 16);
    for (int c = 0; c < 4; ++c) {
      int sc0, m0, sc1, m1;
      scale_min_k4(b + 4, 2 * c, sc0, m0);
      scale_min_k4(b + 4, 2 * c + 1, sc1, m1);
      const __m256i raw = load32(b + 48 + 32 * c);
      const __m256i bit_lo = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c), one), 4);
      const __m256i bit_hi = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c + 1), one), 4);
      const __m256i u_lo = _mm256_or_si256(_mm256_and_si256(raw, m4), bit_lo);
      const __m256i u_hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(raw, 4), m4), bit_hi);
      const BlockQ16 &x0 = x[2 * c], &x1 = x[2 * c + 1];
      acc.add(2 * c, d * sc0 * x0.d, dot32(u_lo, x0.qs));
      acc.add(2 * c + 1, d * sc1 * x1.d, dot32(u_hi, x1.qs));
      mins += dmin * (m0 * x0.d * static_cast<float>(block_sum(x0)) + m1 * x1.d * static_cast<float>(block_sum(x1)));
    }
  }
  return acc.sum() - mins;
}

float dot_q6_k(int64_t n, const void* w, const BlockQ16* x) {  // { u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d }
  const uint8_t* b = static_cast<const uint8_t*>(w);
  const __m256i m4 = _mm256_set1_epi8(0x0F), m2_4 = _mm256_set1_epi8(0x30), k32 = _mm256_set1_epi8(32);
  Acc4 acc;
  for (int64_t i = 0; i < n / 256; ++i, b += 210, x += 8) {
    const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
    const float d = f16(b + 208);
    for (int h = 0; h < 2; ++h) {
      // q = (4 low bits | 2 high bits << 4) - 32
      const __m256i a = load32(b + 64 * h), c = load32(b + 64 * h + 32), qh = load32(b + 128 + 32 * h);
      const __m256i u[4] = {
          _mm256_or_si256(_mm256_and_si256(a, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m2_4)),
          _mm256_or_si256(_mm256_and_si256(c, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m2_4)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(a, 4), m4), _mm256_and_si256(qh, m2_4)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(c, 4), m4),
                          _mm256_and_si256(_mm256_srli_epi16(qh, 2), m2_4)),
      };
      for (int g = 0; g < 4; ++g) {
        const BlockQ16& xb = x[4 * h + g];
        const int k = 8 * h + 2 * g;
        acc.add(g, d * xb.d, dot32_scaled(_mm256_sub_epi8(u[g], k32), sc[k], sc[k + 1], xb.qs));
      }
    }
  }
  return acc.sum();
}

float dot_iq4_xs(int64_t n, const void* w, const BlockQ16* x) {  // { f16 d; u16 scales_h; u8 scales_l[4]; u8 qs[128] }
  const uint8_t* b = static_cast<const uint8_t*>(w);
  const __m128i table = table16(kIq4nl);
  Acc4 acc;
  for (int64_t i = 0; i < n / 256; ++i, b += 136, x += 8) {
    uint16_t scales_h;
    std::memcpy(&scales_h, b + 2, 2);
    const float d = f16(b);
    for (int s = 0; s < 8; ++s) {
      const int ls = ((b[4 + s / 2] >> (4 * (s % 2))) & 0xF) | (((scales_h >> (2 * s)) & 3) << 4);
      const __m128i raw = load16(b + 8 + 16 * s);
      const __m256i isum = dot_halves(_mm_shuffle_epi8(table, low4(raw)), _mm_shuffle_epi8(table, high4(raw)), x[s].qs);
      acc.add(s, d * static_cast<float>(ls - 32) * x[s].d, isum);
    }
  }
  return acc.sum();
}

}  // namespace

QuantDotFn quant_dot_avx2(uint32_t ggml_type) {
  switch (ggml_type) {
    case 2: return dot_q4_0;
    case 3: return dot_q4_1;
    case 6: return dot_q5_0;
    case 7: return dot_q5_1;
    case 8: return dot_q8_0;
    case 10: return dot_q2_k;
    case 11: return dot_q3_k;
    case 12: return dot_q4_k;
    case 13: return dot_q5_k;
    case 14: return dot_q6_k;
    case 20: return dot_iq4_nl;
    case 23: return dot_iq4_xs;
    case 39: return dot_mxfp4;
    default: return nullptr;
  }
}

}  // namespace quanta::kernels
