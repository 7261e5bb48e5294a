// AVX-512 dot products of ggml weight blocks with 16-bit activation blocks.
//
// The same decoders as AVX2 (quant_decoders.h), but a 32-weight group is one
// 512-bit register of 16-bit integers: one vpmaddwd per group and token gives 16
// exact 32-bit sums (AVX2 needs two and an add), and the float multiply-add that
// applies the group's and the activation block's scales covers 16 lanes.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "quanta/kernels/quant_dot.h"

namespace quanta::kernels {

namespace {

// 32 decoded weights: w = scale * v - (min_lo for elements 0..15 | min_hi for 16..31).
struct Group {
  __m512i v;
  float scale;
  float min_lo = 0.0f, min_hi = 0.0f;
};

inline Group signed_bytes(__m256i bytes, float scale) { return {_mm512_cvtepi8_epi16(bytes), scale}; }
inline Group signed_halves(__m128i lo, __m128i hi, float scale) {
  return signed_bytes(_mm256_set_m128i(hi, lo), scale);
}
// Signed bytes with elements 0..15 multiplied by a and 16..31 by b.
inline Group scaled_bytes(__m256i bytes, int a, int b, float scale) {
  Group g = signed_bytes(bytes, scale);
  const __m512i m = _mm512_inserti64x4(_mm512_set1_epi16(static_cast<int16_t>(a)),
                                       _mm256_set1_epi16(static_cast<int16_t>(b)), 1);
  g.v = _mm512_mullo_epi16(g.v, m);
  return g;
}

// The group times an integer (the K-quant decoders' sub-scales).
inline Group times(Group g, int k) {
  g.v = _mm512_mullo_epi16(g.v, _mm512_set1_epi16(static_cast<int16_t>(k)));
  return g;
}

#include "quanta/kernels/x86/quant_decoders.h"

constexpr int kPrefetchBytes = 2048;

// A QuantDotFn over a kernel for M <= 4 tokens: kernel.template operator()<M>(w, x, stride,
// out) with the row as bytes and token t's activation blocks at x + t * stride.
template <class Block, class Kernel>
void over_tokens(const void* w, const void* xq, int64_t x_bytes, int n_tokens, float* out, Kernel kernel) {
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* x = static_cast<const Block*>(xq);
  const int64_t stride = x_bytes / static_cast<int64_t>(sizeof(Block));
  in_fours(n_tokens, [&]<int M>(int t) { kernel.template operator()<M>(wb, x + t * stride, stride, out + t); });
}

// out[t] for M tokens (M <= 4) whose activation blocks start at x + t * stride.
// One token keeps two accumulators, alternating by group, so that successive
// multiply-adds do not wait on each other.
template <class D, int M>
void dot_m(int64_t n, const uint8_t* w, const BlockQ16* x, int64_t stride, float* out) {
  constexpr int kAcc = M == 1 ? 2 : M;
  __m512 acc[kAcc];
  for (auto& a : acc) a = _mm512_setzero_ps();
  float mins[M] = {};
  constexpr int kGroups = D::kBlock / 32;
  for (int64_t blk = 0; blk < n / D::kBlock; ++blk, w += D::kBytes) {
    const BlockQ16* xb = x + blk * kGroups;
    // Rows follow one another in memory: fetch ahead of the stream (past the row's
    // end it is the next row, the next call's). The kernel waits on memory otherwise.
    for (int off = 0; off < D::kBytes; off += 64)
      _mm_prefetch(reinterpret_cast<const char*>(w) + kPrefetchBytes + off, _MM_HINT_T0);
    D::each(w, [&](int g, const Group& gr) {
      for (int t = 0; t < M; ++t) {
        const BlockQ16& a = xb[t * stride + g];
        const __m512i isum = _mm512_madd_epi16(gr.v, _mm512_loadu_si512(a.qs));
        const int k = M == 1 ? (g & 1) : t;
        acc[k] = _mm512_fmadd_ps(_mm512_set1_ps(gr.scale * a.d), _mm512_cvtepi32_ps(isum), acc[k]);
        if constexpr (D::kMins)
          mins[t] += gr.min_lo * a.dsum[0] + gr.min_hi * a.dsum[1];
      }
    });
  }
  if constexpr (M == 1)
    out[0] = _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1])) - mins[0];
  else
    for (int t = 0; t < M; ++t) out[t] = _mm512_reduce_add_ps(acc[t]) - mins[t];
}

template <class D>
void dot(int64_t n, const void* w, const void* xq, int64_t x_bytes, int n_tokens, float* out) {
  over_tokens<BlockQ16>(w, xq, x_bytes, n_tokens, out,
                   [n]<int M>(auto wb, auto x, int64_t stride, float* o) { dot_m<D, M>(n, wb, x, stride, o); });
}

// ---- Q4_0 as bytes: four blocks per step against BlockQ16x4 ----
//
// The 16-bit path above spends per 32 weights and token a widening, a vpmaddwd, a
// conversion, a scale broadcast and a multiply-add, which keeps Q4_0 decoding at
// about half the memory bandwidth. Here four blocks (72 bytes) are gathered by one
// word permute (each block's nibbles start at an even offset) and their low and high
// nibbles u make two registers in BlockQ16x4's order (block b at bytes 16 b..,
// elements 0..15 in one, 16..31 in the other). Activations q = 256 hi + lo meet them
// as bytes in vpdpbusd, exactly, in lanes of eight values of one block: the signed
// high bytes against u (unsigned), starting from 8 neg_hi_sum so that the lane holds
// sum((u - 8) hi), then shifted by 8, and the unsigned low bytes against u - 8
// (signed). Per four blocks and token: four vpdpbusd, two shifts, a conversion, a
// multiply and a multiply-add.

// Word k of the gathered nibbles: block k / 8's word k % 8 of its 16 bytes, i.e. word
// 9 (k / 8) + 1 + k % 8 of the 72 (words 32 and up come from the second register);
// lane l of the scales: block l / 4's d, word 9 (l / 4).
alignas(64) constexpr uint16_t kQ4_0Words[32] = {1,  2,  3,  4,  5,  6,  7,  8,  10, 11, 12, 13, 14, 15, 16, 17,
                                                 19, 20, 21, 22, 23, 24, 25, 26, 28, 29, 30, 31, 32, 33, 34, 35};
alignas(64) constexpr uint16_t kQ4_0Scales[32] = {0, 0, 0, 0, 9, 9, 9, 9, 18, 18, 18, 18, 27, 27, 27, 27};

template <int M>
void dot_q4_0_m(int64_t n, const uint8_t* w, const BlockQ16x4* x, int64_t stride, float* out) {
  const __m512i words = _mm512_load_si512(kQ4_0Words), scale_words = _mm512_load_si512(kQ4_0Scales);
  const __m512i m4 = _mm512_set1_epi8(0x0F), eight = _mm512_set1_epi8(8);
  __m512 acc[M];
  for (auto& a : acc) a = _mm512_setzero_ps();
  const int64_t blocks = n / 32;
  for (int64_t b = 0, step = 0; b < blocks; b += 4, ++step, w += 72) {
    for (int off = 0; off < 72; off += 64)
      _mm_prefetch(reinterpret_cast<const char*>(w) + kPrefetchBytes + off, _MM_HINT_T0);
    __m512i r0, r1;
    if (blocks - b >= 4) {
      r0 = _mm512_loadu_si512(w);
      r1 = _mm512_zextsi128_si512(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(w + 64)));
    } else {  // the row's last one to three blocks; the rest reads as zero codes and scales
      r0 = _mm512_maskz_loadu_epi8((1ull << (18 * (blocks - b))) - 1, w);
      r1 = _mm512_setzero_si512();
    }
    const __m512i nib = _mm512_permutex2var_epi16(r0, words, r1);
    const __m512i u1 = _mm512_and_si512(nib, m4), u2 = _mm512_and_si512(_mm512_srli_epi16(nib, 4), m4);
    const __m512i q1 = _mm512_sub_epi8(u1, eight), q2 = _mm512_sub_epi8(u2, eight);
    const __m512 scale = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(scale_words, r0)));
    for (int t = 0; t < M; ++t) {
      const BlockQ16x4& a = x[t * stride + step];
      __m512i s = _mm512_slli_epi32(_mm512_loadu_si512(a.neg_hi_sum), 3);
      s = _mm512_dpbusd_epi32(s, u1, _mm512_loadu_si512(a.hi[0]));
      s = _mm512_dpbusd_epi32(s, u2, _mm512_loadu_si512(a.hi[1]));
      s = _mm512_slli_epi32(s, 8);
      s = _mm512_dpbusd_epi32(s, _mm512_loadu_si512(a.lo[0]), q1);
      s = _mm512_dpbusd_epi32(s, _mm512_loadu_si512(a.lo[1]), q2);
      acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(scale, _mm512_set1_ps(a.d)), _mm512_cvtepi32_ps(s), acc[t]);
    }
  }
  for (int t = 0; t < M; ++t) out[t] = _mm512_reduce_add_ps(acc[t]);
}

void dot_q4_0(int64_t n, const void* w, const void* xq, int64_t x_bytes, int n_tokens, float* out) {
  over_tokens<BlockQ16x4>(w, xq, x_bytes, n_tokens, out,
                   [n]<int M>(auto wb, auto x, int64_t stride, float* o) { dot_q4_0_m<M>(n, wb, x, stride, o); });
}

// ---- Q4_K and Q5_K as bytes against BlockQ16Kx ----
//
// A super-block's 128 bytes of nibbles are two registers; their low and high nibbles u
// (0..15; Q5_K adds its fifth bit, 0..31) make four, each holding two sub-blocks of 32. vpmaddubsw multiplies u with the
// activations' signed high bytes and the unsigned low bytes with u into 16-bit sums of
// two (at most 2 x 31 x 255, no saturation), and vpdpwssd multiplies those by the
// sub-block scales into int32: 256 sum(sc u hi) + sum(sc u lo) is the super-block's exact
// sum (at most 4 x 2 x 7936 x 63 x 256 < 2^31 in a lane). Per super-block and token:
// eight vpmaddubsw, eight vpdpwssd and a float multiply-add, against eight widenings,
// scale broadcasts, multiplies and vpdpwssd on the 16-bit path.

// Lanes of the sub-block scales (and Q5_K's fifth bits) for register k: its bytes 0..31 are sub-block kQ4KSub[k][0],
// 32..63 kQ4KSub[k][1].
constexpr int kQ4KSub[4][2] = {{0, 2}, {1, 3}, {4, 6}, {5, 7}};

template <bool kHighBit, int M>
void dot_qk_m(int64_t n, const uint8_t* w, const BlockQ16Kx* x, int64_t stride, float* out) {
  using D = QK<kHighBit>;
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  __m512i sub_index[4];
  for (int k = 0; k < 4; ++k)
    sub_index[k] = _mm512_inserti64x4(_mm512_set1_epi16(static_cast<int16_t>(kQ4KSub[k][0])),
                                      _mm256_set1_epi16(static_cast<int16_t>(kQ4KSub[k][1])), 1);
  // Minimum j (per 32) on the activations' sums of 16 2 j and 2 j + 1.
  const __m512i pairs = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
  __m512 acc[M], min_acc[M];
  for (auto& a : acc) a = _mm512_setzero_ps();
  for (auto& a : min_acc) a = _mm512_setzero_ps();
  for (int64_t blk = 0; blk < n / 256; ++blk, w += D::kBytes) {
    for (int off = 0; off < D::kBytes; off += 64)
      _mm_prefetch(reinterpret_cast<const char*>(w) + kPrefetchBytes + off, _MM_HINT_T0);
    uint8_t sc[8], mn[8];
    scales_mins_k4_bytes(w + 4, sc, mn);
    alignas(32) float mins[8];
    mins_f32(mn, f16(w + 2), mins);
    const __m512 min_v = _mm512_permutexvar_ps(pairs, _mm512_castps256_ps512(_mm256_load_ps(mins)));
    const float d = f16(w);
    int64_t sc_bytes;
    std::memcpy(&sc_bytes, sc, 8);
    const __m512i sc16 = _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(sc_bytes)));
    const uint8_t* qs = w + (kHighBit ? 48 : 16);
    const __m512i r0 = _mm512_loadu_si512(qs), r1 = _mm512_loadu_si512(qs + 64);
    __m512i u[4] = {_mm512_and_si512(r0, m4), _mm512_and_si512(_mm512_srli_epi16(r0, 4), m4),
                    _mm512_and_si512(r1, m4), _mm512_and_si512(_mm512_srli_epi16(r1, 4), m4)};
    if constexpr (kHighBit) {
      // Q5_K: bit j of qh[i] is the fifth bit of sub-block j's element i; qh in both halves.
      const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 16)));
      for (int k = 0; k < 4; ++k) {
        const __m512i bit = _mm512_inserti64x4(_mm512_set1_epi8(static_cast<char>(1 << kQ4KSub[k][0])),
                                               _mm256_set1_epi8(static_cast<char>(1 << kQ4KSub[k][1])), 1);
        u[k] = _mm512_mask_add_epi8(u[k], _mm512_test_epi8_mask(qh, bit), u[k], _mm512_set1_epi8(16));
      }
    }
    __m512i scale[4];
    for (int k = 0; k < 4; ++k) scale[k] = _mm512_permutexvar_epi16(sub_index[k], sc16);
    for (int t = 0; t < M; ++t) {
      const BlockQ16Kx& a = x[t * stride + blk];
      __m512i hi = _mm512_setzero_si512(), lo = _mm512_setzero_si512();
      for (int k = 0; k < 4; ++k) {
        hi = _mm512_dpwssd_epi32(hi, _mm512_maddubs_epi16(u[k], _mm512_loadu_si512(a.hi[k])), scale[k]);
        lo = _mm512_dpwssd_epi32(lo, _mm512_maddubs_epi16(_mm512_loadu_si512(a.lo[k]), u[k]), scale[k]);
      }
      const __m512i s = _mm512_add_epi32(_mm512_slli_epi32(hi, 8), lo);
      acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(d * a.d), _mm512_cvtepi32_ps(s), acc[t]);
      min_acc[t] = _mm512_fmadd_ps(min_v, _mm512_loadu_ps(a.xsum), min_acc[t]);
    }
  }
  for (int t = 0; t < M; ++t) out[t] = _mm512_reduce_add_ps(_mm512_sub_ps(acc[t], min_acc[t]));
}

template <bool kHighBit>
void dot_qk(int64_t n, const void* w, const void* xq, int64_t x_bytes, int n_tokens, float* out) {
  over_tokens<BlockQ16Kx>(w, xq, x_bytes, n_tokens, out,
                   [n]<int M>(auto wb, auto x, int64_t stride, float* o) { dot_qk_m<kHighBit, M>(n, wb, x, stride, o); });
}

// ---- Q6_K as bytes against BlockQ16Kx ----
//
// The same products on 6-bit codes u = q + 32 (0..63): each half of 128 weights is a
// register of ql's low nibbles and one of its high nibbles with qh's two bits added, in
// element order, then reordered into BlockQ16Kx's by 128-bit lanes. Sub-scales are signed
// and per 16; the offset 32 comes off in float against the activations' sums of 16. The
// int32 sums are taken per half (2 x 2 x 16128 x 128 x 256 + 2 x 2 x 32130 x 128 < 2^31:
// a whole block would overflow) and added as floats.

template <int M>
void dot_q6_k_m(int64_t n, const uint8_t* w, const BlockQ16Kx* x, int64_t stride, float* out) {
  const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
  // Register k's 16-weight sub-blocks: bytes 0..15, 16..31 are 2 A and 2 A + 1, bytes 32..63
  // 2 B and 2 B + 1, for (A, B) = kQ4KSub[k].
  __m512i sub_index[4];
  for (int k = 0; k < 4; ++k) {
    const int a = 2 * kQ4KSub[k][0], b = 2 * kQ4KSub[k][1];
    sub_index[k] = _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_set_m128i(_mm_set1_epi16(static_cast<int16_t>(a + 1)), _mm_set1_epi16(static_cast<int16_t>(a)))),
        _mm256_set_m128i(_mm_set1_epi16(static_cast<int16_t>(b + 1)), _mm_set1_epi16(static_cast<int16_t>(b))), 1);
  }
  __m512 acc[M], offset_acc[M];
  for (auto& a : acc) a = _mm512_setzero_ps();
  for (auto& a : offset_acc) a = _mm512_setzero_ps();
  for (int64_t blk = 0; blk < n / 256; ++blk, w += Q6_K::kBytes) {
    for (int off = 0; off < Q6_K::kBytes; off += 64)
      _mm_prefetch(reinterpret_cast<const char*>(w) + kPrefetchBytes + off, _MM_HINT_T0);
    const float d = f16(w + 208);
    const __m128i sc8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 192));
    const __m512i sc16 = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(sc8));
    // 32 d sc_j, against d_x * (sum of 16) for the offset.
    const __m512 offset_v = _mm512_mul_ps(_mm512_set1_ps(32.0f * d), _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(sc8)));
    __m512i u[4], scale[4];
    for (int h = 0; h < 2; ++h) {
      const __m512i ql = _mm512_loadu_si512(w + 64 * h);
      const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 128 + 32 * h));
      // Bits 0-1 of qh go to elements 0..31, 2-3 to 32..63, 4-5 to 64..95, 6-7 to 96..127.
      const __m512i qh2 = _mm512_inserti64x4(_mm512_castsi256_si512(qh), _mm256_srli_epi16(qh, 2), 1);
      const __m512i low = _mm512_or_si512(_mm512_and_si512(ql, m4), _mm512_and_si512(_mm512_slli_epi16(qh2, 4), m30));
      const __m512i high = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4), _mm512_and_si512(qh2, m30));
      u[2 * h] = _mm512_shuffle_i64x2(low, high, 0x44);      // elements 0..31 and 64..95 of the half
      u[2 * h + 1] = _mm512_shuffle_i64x2(low, high, 0xEE);  // 32..63 and 96..127
    }
    for (int k = 0; k < 4; ++k) scale[k] = _mm512_permutexvar_epi16(sub_index[k], sc16);
    for (int t = 0; t < M; ++t) {
      const BlockQ16Kx& a = x[t * stride + blk];
      __m512 sum = _mm512_setzero_ps();
      for (int h = 0; h < 2; ++h) {
        __m512i hi = _mm512_setzero_si512(), lo = _mm512_setzero_si512();
        for (int k = 2 * h; k < 2 * h + 2; ++k) {
          hi = _mm512_dpwssd_epi32(hi, _mm512_maddubs_epi16(u[k], _mm512_loadu_si512(a.hi[k])), scale[k]);
          lo = _mm512_dpwssd_epi32(lo, _mm512_maddubs_epi16(_mm512_loadu_si512(a.lo[k]), u[k]), scale[k]);
        }
        sum = _mm512_add_ps(sum, _mm512_cvtepi32_ps(_mm512_add_epi32(_mm512_slli_epi32(hi, 8), lo)));
      }
      acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(d * a.d), sum, acc[t]);
      offset_acc[t] = _mm512_fmadd_ps(offset_v, _mm512_loadu_ps(a.xsum), offset_acc[t]);
    }
  }
  for (int t = 0; t < M; ++t) out[t] = _mm512_reduce_add_ps(_mm512_sub_ps(acc[t], offset_acc[t]));
}

void dot_q6_k(int64_t n, const void* w, const void* xq, int64_t x_bytes, int n_tokens, float* out) {
  over_tokens<BlockQ16Kx>(w, xq, x_bytes, n_tokens, out,
                   [n]<int M>(auto wb, auto x, int64_t stride, float* o) { dot_q6_k_m<M>(n, wb, x, stride, o); });
}

// ---- K-quants: a super-block summed in int32 ----
//
// The K-quants (and IQ4_XS) scale 16- or 32-element sub-blocks by small integers
// under one float d per 256 weights. With the activations of those 256 under one
// scale too (ActLayout::kQ16K), the whole super-block is one integer sum:
// vpdpwssd adds each group's 16-bit products (codes times integer sub-scale) into
// int32 lanes, and one float multiply-add per 256 weights and token applies
// d * d_x, where the per-32 path above needs a conversion and a multiply-add per
// 32. No overflow: a lane adds 16 products of at most 4096 (Q6_K's 32 x 128;
// IQ4_XS 127 x 32) by 32767, below 2^31.

// out[t] for M tokens (M <= 4); every group of a block has the block's d as scale.
// One token sums alternate groups into two registers (shorter dependency chains).
// The minimums of a block (per 16 weights) meet the activations' sums per 16 in
// one vector multiply-add per token.
template <class D, int M>
void dot_super_m(int64_t n, const uint8_t* w, const BlockQ16K* x, int64_t stride, float* out) {
  constexpr int kSums = M == 1 ? 2 : 1;
  __m512 acc[M], min_acc[M];
  for (auto& a : acc) a = _mm512_setzero_ps();
  for (auto& a : min_acc) a = _mm512_setzero_ps();
  for (int64_t blk = 0; blk < n / 256; ++blk, w += D::kBytes) {
    for (int off = 0; off < D::kBytes; off += 64)
      _mm_prefetch(reinterpret_cast<const char*>(w) + kPrefetchBytes + off, _MM_HINT_T0);
    __m512i sum[M][kSums];
    for (auto& row : sum)
      for (auto& v : row) v = _mm512_setzero_si512();
    float d = 0.0f;
    alignas(64) float mins[16];
    D::each(w, [&](int g, const Group& gr) {
      d = gr.scale;
      if constexpr (D::kMins) {
        mins[2 * g] = gr.min_lo;
        mins[2 * g + 1] = gr.min_hi;
      }
      for (int t = 0; t < M; ++t) {
        const __m512i xv = _mm512_loadu_si512(x[t * stride + blk].qs + 32 * g);
        sum[t][g % kSums] = _mm512_dpwssd_epi32(sum[t][g % kSums], gr.v, xv);
      }
    });
    for (int t = 0; t < M; ++t) {
      const BlockQ16K& a = x[t * stride + blk];
      const __m512i s = kSums == 2 ? _mm512_add_epi32(sum[t][0], sum[t][kSums - 1]) : sum[t][0];
      acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(d * a.d), _mm512_cvtepi32_ps(s), acc[t]);
      if constexpr (D::kMins)
        min_acc[t] = _mm512_fmadd_ps(_mm512_load_ps(mins), _mm512_loadu_ps(a.hsum), min_acc[t]);
    }
  }
  for (int t = 0; t < M; ++t) out[t] = _mm512_reduce_add_ps(_mm512_sub_ps(acc[t], min_acc[t]));
}

template <class D>
void dot_super(int64_t n, const void* w, const void* xq, int64_t x_bytes, int n_tokens, float* out) {
  over_tokens<BlockQ16K>(w, xq, x_bytes, n_tokens, out,
                   [n]<int M>(auto wb, auto x, int64_t stride, float* o) { dot_super_m<D, M>(n, wb, x, stride, o); });
}

// ---- dequantization for the prompt path ----

template <class D>
void dequant(const void* w, float* out, int64_t n) {
  const auto* b = static_cast<const uint8_t*>(w);
  for (int64_t blk = 0; blk < n / D::kBlock; ++blk, b += D::kBytes, out += D::kBlock)
    D::each(b, [&](int g, const Group& gr) {
      const __m512 s = _mm512_set1_ps(gr.scale);
      const __m512 lo = _mm512_cvtepi32_ps(_mm512_cvtepi16_epi32(_mm512_castsi512_si256(gr.v)));
      const __m512 hi = _mm512_cvtepi32_ps(_mm512_cvtepi16_epi32(_mm512_extracti64x4_epi64(gr.v, 1)));
      _mm512_storeu_ps(out + 32 * g, _mm512_fmsub_ps(lo, s, _mm512_set1_ps(gr.min_lo)));
      _mm512_storeu_ps(out + 32 * g + 16, _mm512_fmsub_ps(hi, s, _mm512_set1_ps(gr.min_hi)));
    });
}

// ---- prompts: the VNNI panel GEMM ----

#include "quanta/kernels/x86/panel_gemm_avx512.h"

static_assert(kPanelRows == quant_gemm_rows);

// The panel's window: 16 where codes times sub-scales reach 4096 in magnitude
// (Q6_K's 32 x 128, IQ4_XS's 127 x 32: 16 products of 4096 by 32767 stay below
// 2^31, 32 would not) or where the minimums change every 16 (Q2_K), else 32,
// the activation block (Q5_K's largest, 31 x 63, still fits 32 products).
template <class D>
constexpr int64_t panel_window() {
  return std::is_same_v<D, Q6_K> || std::is_same_v<D, IQ4_XS> || std::is_same_v<D, Q2_K> ? 16 : 32;
}

// BlockQ16 rows (quantize_act as kQ16) as panel_gemm reads them.
template <int64_t W>
struct Q16Acts {
  const BlockQ16* x;
  int64_t stride;  // blocks per token
  const BlockQ16& at(int64_t t, int64_t i) const { return x[t * stride + i * W / 32]; }
  const int16_t* pairs(int64_t t, int64_t i) const { return at(t, i).qs + (W == 16 ? 16 * (i % 2) : 0); }
  float d(int64_t t, int64_t i) const { return at(t, i).d; }
  float dsum(int64_t t, int64_t i) const {
    const BlockQ16& b = at(t, i);
    return W == 16 ? b.dsum[i % 2] : b.dsum[0] + b.dsum[1];
  }
};

template <class D>
void gemm(int64_t n, const void* w, int64_t row_bytes, int rows, const void* xq, int64_t x_bytes, int64_t n_tokens,
          float* y, int64_t y_stride) {
  constexpr int64_t W = panel_window<D>();
  thread_local Panel panel;
  panel.reset(n, W, rows);
  // The panel's rows are read across (block by block, every row), which the hardware prefetcher
  // does not follow: ask for all of them now, and for the next panel's (the next call's) too.
  const auto* base = static_cast<const uint8_t*>(w);
  const int64_t span = static_cast<int64_t>(rows) * row_bytes;
  for (int64_t off = 0; off < span; off += 64) _mm_prefetch(reinterpret_cast<const char*>(base + off), _MM_HINT_T0);
  for (int64_t off = 0; off < span; off += 64) _mm_prefetch(reinterpret_cast<const char*>(base + span + off), _MM_HINT_T2);
  // Block by block, every row's groups side by side, then transposed into the panel.
  constexpr int kGroups = D::kBlock / 32;
  alignas(64) __m512i codes[kGroups][kPanelRows];
  for (auto& g : codes)
    for (int r = rows; r < kPanelRows; ++r) g[r] = _mm512_setzero_si512();
  for (int64_t blk = 0; blk < n / D::kBlock; ++blk) {
    for (int r = 0; r < rows; ++r) {
      const uint8_t* row = static_cast<const uint8_t*>(w) + r * row_bytes;
      D::each(row + blk * D::kBytes, [&](int g, const Group& gr) {
        const int64_t k = blk * D::kBlock + 32 * g;
        codes[g][r] = gr.v;
        // With a window of 32 the minimums are one per 32 (min_lo == min_hi).
        if constexpr (W == 32) {
          panel.put_scale(r, k / 32, gr.scale, gr.min_lo);
        } else {
          panel.put_scale(r, k / 16, gr.scale, gr.min_lo);
          panel.put_scale(r, k / 16 + 1, gr.scale, gr.min_hi);
        }
      });
    }
    for (int g = 0; g < kGroups; ++g) panel.put_rows(blk * D::kBlock + 32 * g, codes[g]);
  }
  const Q16Acts<W> acts{static_cast<const BlockQ16*>(xq), x_bytes / static_cast<int64_t>(sizeof(BlockQ16))};
  panel_gemm<D::kMins>(panel, acts, rows, n_tokens, y, y_stride);
}

}  // namespace

QuantGemmFn quant_gemm_avx512(uint32_t ggml_type) {
  return for_ggml_type<QuantGemmFn>(ggml_type, []<class D>() -> QuantGemmFn { return gemm<D>; });
}

QuantDequantFn quant_dequant_avx512(uint32_t ggml_type) {
  return for_ggml_type<QuantDequantFn>(ggml_type, []<class D>() -> QuantDequantFn { return dequant<D>; });
}

QuantDotFn quant_dot_avx512(uint32_t ggml_type, bool bytes) {
  // The 256-weight blocks (K-quants, IQ4_XS) take the super-block kernels (ActLayout::kQ16K).
  return for_ggml_type<QuantDotFn>(ggml_type, [bytes]<class D>() -> QuantDotFn {
    if (bytes) {
      if constexpr (std::is_same_v<D, Q4_0>) return dot_q4_0;
      if constexpr (std::is_same_v<D, Q4_K>) return dot_qk<false>;
      if constexpr (std::is_same_v<D, Q5_K>) return dot_qk<true>;
      if constexpr (std::is_same_v<D, Q6_K>) return dot_q6_k;
      return nullptr;
    }
    if constexpr (D::kBlock == 256) return dot_super<D>;
    else return dot<D>;
  });
}

}  // namespace quanta::kernels
