// ggml weight-block decoders shared by the x86 dot-product kernels
// (quant_dot_avx2.cc, quant_dot_avx512.cc). Block layouts and formulas:
// checkpoint-formats-2.md sec. 5.2-5.3 (ggml-common.h, ggml-quants.c).
//
// Each decoder turns a weight block into groups of 32 weights in element order
// (nibbles, high bits, lookup tables; the 256-weight blocks multiply their codes
// by the integer sub-block scale while still 16-bit, at most 32 x 128, and give the
// block's d as every group's scale) plus the group's float scale and minimums. It
// builds groups with signed_bytes / signed_halves / scaled_bytes / times, which the
// including translation unit defines for its own Group type (two 256-bit halves for AVX2, one 512-bit
// register for AVX-512): include this header inside that unit's anonymous
// namespace, after them.
#pragma once

// (No vector constants at namespace scope: their initialisers would run at start-up on any CPU.)

inline float f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

inline __m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
inline __m128i load16(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }
inline __m128i low4(__m128i b) { return _mm_and_si128(b, _mm_set1_epi8(0x0F)); }
inline __m128i high4(__m128i b) { return _mm_and_si128(_mm_srli_epi16(b, 4), _mm_set1_epi8(0x0F)); }

// 16 bytes of a 32-element block: element j in the low nibble of byte j, element
// j + 16 in its high nibble -> 32 bytes 0..15 in element order.
inline __m256i nibbles(const uint8_t* qs) {
  const __m128i b = load16(qs);
  return _mm256_set_m128i(high4(b), low4(b));
}

// Byte i = 0xFF where bit i of `bits` is set, else 0.
inline __m256i bits_to_bytes(uint32_t bits) {
  const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,  //
                                          2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
  const __m256i mask = _mm256_set1_epi64x(0x8040201008040201);
  const __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)), spread);
  return _mm256_cmpeq_epi8(_mm256_and_si256(v, mask), mask);
}

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

// ---- decoders: kBlock elements in kBytes bytes; each(block, f) calls f(g, Group) for its 32-element groups ----

struct Q4_0 {  // { f16 d; u8 qs[16] }
  static constexpr int kBlock = 32, kBytes = 18;
  static constexpr bool kMins = false;
  template <class F> static void each(const uint8_t* b, F f) {
    const __m128i raw = load16(b + 2), eight = _mm_set1_epi8(8);
    f(0, signed_halves(_mm_sub_epi8(low4(raw), eight), _mm_sub_epi8(high4(raw), eight), f16(b)));
  }
};

struct Q4_1 {  // { f16 d; f16 m; u8 qs[16] }
  static constexpr int kBlock = 32, kBytes = 20;
  static constexpr bool kMins = true;
  template <class F> static void each(const uint8_t* b, F f) {
    const __m128i raw = load16(b + 4);
    Group g = signed_halves(low4(raw), high4(raw), f16(b));
    g.min_lo = g.min_hi = -f16(b + 2);
    f(0, g);
  }
};

struct Q5_0 {  // { f16 d; u8 qh[4]; u8 qs[16] }
  static constexpr int kBlock = 32, kBytes = 22;
  static constexpr bool kMins = false;
  template <class F> static void each(const uint8_t* b, F f) {
    uint32_t qh;
    std::memcpy(&qh, b + 2, 4);
    // (nib | bit << 4) - 16 == nib - 16 where the bit is clear: set the top nibble then.
    const __m256i high = _mm256_andnot_si256(bits_to_bytes(qh), _mm256_set1_epi8(static_cast<char>(0xF0)));
    f(0, signed_bytes(_mm256_or_si256(nibbles(b + 6), high), f16(b)));
  }
};

struct Q5_1 {  // { f16 d; f16 m; u8 qh[4]; u8 qs[16] }
  static constexpr int kBlock = 32, kBytes = 24;
  static constexpr bool kMins = true;
  template <class F> static void each(const uint8_t* b, F f) {
    uint32_t qh;
    std::memcpy(&qh, b + 4, 4);
    const __m256i q = _mm256_or_si256(nibbles(b + 8), _mm256_and_si256(bits_to_bytes(qh), _mm256_set1_epi8(0x10)));
    Group g = signed_bytes(q, f16(b));
    g.min_lo = g.min_hi = -f16(b + 2);
    f(0, g);
  }
};

struct Q8_0 {  // { f16 d; i8 qs[32] }
  static constexpr int kBlock = 32, kBytes = 34;
  static constexpr bool kMins = false;
  template <class F> static void each(const uint8_t* b, F f) { f(0, signed_bytes(load32(b + 2), f16(b))); }
};

template <const int8_t* kTable>
struct Lookup4 {  // IQ4_NL { f16 d; u8 qs[16] } and MXFP4 { u8 e; u8 qs[16] }
  static constexpr int kBlock = 32, kBytes = kTable == kIq4nl ? 18 : 17;
  static constexpr bool kMins = false;
  template <class F> static void each(const uint8_t* b, F f) {
    const __m128i table = table16(kTable);
    const int skip = kBytes - 16;
    const __m128i raw = load16(b + skip);
    const float scale = kTable == kIq4nl ? f16(b) : e8m0_half(b[0]);
    f(0, signed_halves(_mm_shuffle_epi8(table, low4(raw)), _mm_shuffle_epi8(table, high4(raw)), scale));
  }
};
using IQ4_NL = Lookup4<kIq4nl>;
using MXFP4 = Lookup4<kFp4x2>;

struct Q2_K {  // { u8 scales[16]; u8 qs[64]; f16 d; f16 dmin }
  static constexpr int kBlock = 256, kBytes = 84;
  static constexpr bool kMins = true;
  template <class F> static void each(const uint8_t* b, F f) {
    const uint8_t* sc = b;
    const float d = f16(b + 80), dmin = f16(b + 82);
    for (int h = 0; h < 2; ++h) {
      const __m256i q = load32(b + 16 + 32 * h);
      for (int j = 0; j < 4; ++j) {
        const int s = 8 * h + 2 * j;
        const __m256i u = _mm256_and_si256(_mm256_srli_epi16(q, 2 * j), _mm256_set1_epi8(3));
        Group g = scaled_bytes(u, sc[s] & 0xF, sc[s + 1] & 0xF, d);
        g.min_lo = dmin * static_cast<float>(sc[s] >> 4);
        g.min_hi = dmin * static_cast<float>(sc[s + 1] >> 4);
        f(4 * h + j, g);
      }
    }
  }
};

struct Q3_K {  // { u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d }
  static constexpr int kBlock = 256, kBytes = 110;
  static constexpr bool kMins = false;
  template <class F> static void each(const uint8_t* b, F f) {
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
        const __m256i low = _mm256_and_si256(_mm256_srli_epi16(q, 2 * j), _mm256_set1_epi8(3));
        const __m256i hbit = _mm256_and_si256(_mm256_srli_epi16(hmask, 4 * h + j), _mm256_set1_epi8(1));
        const __m256i v = _mm256_sub_epi8(_mm256_or_si256(low, _mm256_slli_epi16(hbit, 2)), _mm256_set1_epi8(4));
        const int k = 8 * h + 2 * j;
        f(4 * h + j, scaled_bytes(v, sc[k], sc[k + 1], d));
      }
    }
  }
};

struct Q6_K {  // { u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d }
  static constexpr int kBlock = 256, kBytes = 210;
  static constexpr bool kMins = false;
  template <class F> static void each(const uint8_t* b, F f) {
    const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
    const float d = f16(b + 208);
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2_4 = _mm256_set1_epi8(0x30), k32 = _mm256_set1_epi8(32);
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
        const int k = 8 * h + 2 * g;
        f(4 * h + g, scaled_bytes(_mm256_sub_epi8(u[g], k32), sc[k], sc[k + 1], d));
      }
    }
  }
};

// ---- Q4_K, Q5_K and IQ4_XS ----
// Like Q2_K, Q3_K and Q6_K above, they multiply the integer sub-scales into the codes
// (times(group, k), which the including unit defines too) and give the block's d as
// every group's scale, so a kernel can sum the whole block in int32 (ActLayout::kQ16K).

// The 8 six-bit scales and 8 mins of a Q4_K/Q5_K block (get_scale_min_k4 for j = 0..7)
// as bytes, from the 12 scale bytes read as three words w0 w1 w2: scales 0-3 and
// mins 0-3 are the low 6 bits of w0 and w1; scales 4-7 take their low 4 bits from
// w2's low nibbles and their top 2 from w0's top bits, mins 4-7 from w2's high
// nibbles and w1's top bits. A few word operations instead of 16 byte-wise ones.
inline void scales_mins_k4_bytes(const uint8_t* s, uint8_t sc[8], uint8_t mn[8]) {
  uint32_t w[3];
  std::memcpy(w, s, 12);
  constexpr uint32_t kLow6 = 0x3F3F3F3F, kLow4 = 0x0F0F0F0F, kLow2 = 0x03030303;
  const uint32_t sc_hi = (w[2] & kLow4) | (((w[0] >> 6) & kLow2) << 4);
  const uint32_t mn_hi = ((w[2] >> 4) & kLow4) | (((w[1] >> 6) & kLow2) << 4);
  const uint32_t sc_lo = w[0] & kLow6, mn_lo = w[1] & kLow6;
  std::memcpy(sc, &sc_lo, 4);
  std::memcpy(sc + 4, &sc_hi, 4);
  std::memcpy(mn, &mn_lo, 4);
  std::memcpy(mn + 4, &mn_hi, 4);
}

// dmin * mins as floats, converted 8 at a time.
inline void mins_f32(const uint8_t mn[8], float dmin, float out[8]) {
  int64_t bytes;
  std::memcpy(&bytes, mn, 8);
  const __m256 m = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(bytes)));
  _mm256_storeu_ps(out, _mm256_mul_ps(m, _mm256_set1_ps(dmin)));
}

// Q4_K (kHighBit false) and Q5_K (true), same scales, Q5_K's fifth bits before the nibbles.
template <bool kHighBit>
struct QK {
  static constexpr int kBlock = 256, kBytes = kHighBit ? 176 : 144;
  static constexpr bool kMins = true;
  template <class F> static void each(const uint8_t* b, F f) {
    uint8_t sc[8], mn[8];
    scales_mins_k4_bytes(b + 4, sc, mn);
    float mins[8];
    mins_f32(mn, f16(b + 2), mins);
    const float d = f16(b);
    const uint8_t* qs = b + (kHighBit ? 48 : 16);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int c = 0; c < 4; ++c) {
      const __m256i raw = load32(qs + 32 * c);
      for (int half = 0; half < 2; ++half) {
        const int j = 2 * c + half;
        __m256i q = half ? _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4) : _mm256_and_si256(raw, m4);
        if constexpr (kHighBit)
          q = _mm256_or_si256(q, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(load32(b + 16), j),
                                                                     _mm256_set1_epi8(1)), 4));
        Group g = times(signed_bytes(q, d), sc[j]);
        g.min_lo = g.min_hi = mins[j];
        f(j, g);
      }
    }
  }
};
using Q4_K = QK<false>;  // { f16 d; f16 dmin; u8 scales[12]; u8 qs[128] }
using Q5_K = QK<true>;   // { f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128] }

struct IQ4_XS {  // { f16 d; u16 scales_h; u8 scales_l[4]; u8 qs[128] }
  static constexpr int kBlock = 256, kBytes = 136;
  static constexpr bool kMins = false;
  template <class F> static void each(const uint8_t* b, F f) {
    const __m128i table = table16(kIq4nl);
    uint16_t scales_h;
    std::memcpy(&scales_h, b + 2, 2);
    const float d = f16(b);
    for (int s = 0; s < 8; ++s) {
      const int ls = ((b[4 + s / 2] >> (4 * (s % 2))) & 0xF) | (((scales_h >> (2 * s)) & 3) << 4);
      const __m128i raw = load16(b + 8 + 16 * s);
      f(s, times(signed_halves(_mm_shuffle_epi8(table, low4(raw)), _mm_shuffle_epi8(table, high4(raw)), d),
                 ls - 32));
    }
  }
};

// The decoder of a ggml type: pick.template operator()<Decoder>(), or R{} for none.
template <class R, class Pick>
R for_ggml_type(uint32_t ggml_type, Pick pick) {
  switch (ggml_type) {
    case 2: return pick.template operator()<Q4_0>();
    case 3: return pick.template operator()<Q4_1>();
    case 6: return pick.template operator()<Q5_0>();
    case 7: return pick.template operator()<Q5_1>();
    case 8: return pick.template operator()<Q8_0>();
    case 10: return pick.template operator()<Q2_K>();
    case 11: return pick.template operator()<Q3_K>();
    case 12: return pick.template operator()<Q4_K>();
    case 13: return pick.template operator()<Q5_K>();
    case 14: return pick.template operator()<Q6_K>();
    case 20: return pick.template operator()<IQ4_NL>();
    case 23: return pick.template operator()<IQ4_XS>();
    case 39: return pick.template operator()<MXFP4>();
    default: return R{};
  }
}

// Calls f.template operator()<M>(t) for tokens [t, t + M): fours, then the rest
// (the dot kernels decode each weight block once per call).
template <class F>
void in_fours(int n_tokens, F f) {
  int t = 0;
  for (; t + 4 <= n_tokens; t += 4) f.template operator()<4>(t);
  switch (n_tokens - t) {
    case 3: f.template operator()<3>(t); break;
    case 2: f.template operator()<2>(t); break;
    case 1: f.template operator()<1>(t); break;
    default: break;
  }
}
