// AVX2 dot products of ggml weight blocks with 16-bit activation blocks.
//
// The decoders (quant_decoders.h) give 32-weight groups as two 16-element
// halves of 16-bit integers. One driver multiplies each decoded group with up to
// four tokens' activations by vpmaddwd into eight exact 32-bit sums and one float
// multiply-add per token, so a batch of tokens decodes every weight block once
// per four tokens; minimums and offsets go through the activation blocks' sums.
#include <immintrin.h>

#include <cstring>

#include "quanta/kernels/quant_dot.h"

namespace quanta::kernels {

namespace {

// (No AVX2 constants at namespace scope: their initialisers would run at start-up on any CPU.)

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// 32 decoded weights: w = scale * (lo | hi) - (min_lo | min_hi), the two
// halves being elements 0..15 and 16..31 as 16-bit integers.
struct Group {
  __m256i lo, hi;
  float scale;
  float min_lo = 0.0f, min_hi = 0.0f;
};

inline Group signed_bytes(__m256i bytes, float scale) {
  return {_mm256_cvtepi8_epi16(_mm256_castsi256_si128(bytes)),
          _mm256_cvtepi8_epi16(_mm256_extracti128_si256(bytes, 1)), scale};
}
inline Group signed_halves(__m128i lo, __m128i hi, float scale) {
  return {_mm256_cvtepi8_epi16(lo), _mm256_cvtepi8_epi16(hi), scale};
}
// Signed bytes with elements 0..15 multiplied by a and 16..31 by b.
inline Group scaled_bytes(__m256i bytes, int a, int b, float scale) {
  Group g = signed_bytes(bytes, scale);
  g.lo = _mm256_mullo_epi16(g.lo, _mm256_set1_epi16(static_cast<int16_t>(a)));
  g.hi = _mm256_mullo_epi16(g.hi, _mm256_set1_epi16(static_cast<int16_t>(b)));
  return g;
}

// The group times an integer (the K-quant decoders' sub-scales).
inline Group times(Group g, int k) {
  const __m256i m = _mm256_set1_epi16(static_cast<int16_t>(k));
  g.lo = _mm256_mullo_epi16(g.lo, m);
  g.hi = _mm256_mullo_epi16(g.hi, m);
  return g;
}

#include "quanta/kernels/x86/quant_decoders.h"

// ---- the driver ----

// out[t] for M tokens (M <= 4) whose activation blocks start at x + t * stride.
// One token keeps two accumulators, alternating by group, so that successive
// multiply-adds do not wait on each other.
template <class D, int M>
void dot_m(int64_t n, const uint8_t* w, const BlockQ16* x, int64_t stride, float* out) {
  constexpr int kAcc = M == 1 ? 2 : M;
  __m256 acc[kAcc];
  for (auto& a : acc) a = _mm256_setzero_ps();
  float mins[M] = {};
  constexpr int kGroups = D::kBlock / 32;
  for (int64_t blk = 0; blk < n / D::kBlock; ++blk, w += D::kBytes) {
    const BlockQ16* xb = x + blk * kGroups;
    D::each(w, [&](int g, const Group& gr) {
      for (int t = 0; t < M; ++t) {
        const BlockQ16& a = xb[t * stride + g];
        const __m256i isum = _mm256_add_epi32(_mm256_madd_epi16(gr.lo, load32(a.qs)),
                                              _mm256_madd_epi16(gr.hi, load32(a.qs + 16)));
        const int k = M == 1 ? (g & 1) : t;
        acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(gr.scale * a.d), _mm256_cvtepi32_ps(isum), acc[k]);
        if constexpr (D::kMins)
          mins[t] += gr.min_lo * a.dsum[0] + gr.min_hi * a.dsum[1];
      }
    });
  }
  if constexpr (M == 1)
    out[0] = hsum(_mm256_add_ps(acc[0], acc[1])) - mins[0];
  else
    for (int t = 0; t < M; ++t) out[t] = hsum(acc[t]) - mins[t];
}

template <class D>
void dot(int64_t n, const void* w, const void* xq, int64_t x_bytes, int n_tokens, float* out) {
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* x = static_cast<const BlockQ16*>(xq);
  const int64_t stride = x_bytes / static_cast<int64_t>(sizeof(BlockQ16));
  in_fours(n_tokens, [&]<int M>(int t) { dot_m<D, M>(n, wb, x + t * stride, stride, out + t); });
}

// ---- K-quants: a super-block summed in int32 ----
// As quant_dot_avx512.cc: codes times integer sub-scales meet BlockQ16K activations
// (one scale per 256) in vpmaddwd, summed over the whole block in int32 (no
// overflow: a lane adds at most 16 products of 4096 by 32767), then one float
// multiply-add per block and token, and the minimums as two vector multiply-adds.
template <class D, int M>
void dot_super_m(int64_t n, const uint8_t* w, const BlockQ16K* x, int64_t stride, float* out) {
  constexpr int kSums = M == 1 ? 2 : 1;
  __m256 acc[M], min_acc[M];
  for (auto& a : acc) a = _mm256_setzero_ps();
  for (auto& a : min_acc) a = _mm256_setzero_ps();
  for (int64_t blk = 0; blk < n / 256; ++blk, w += D::kBytes) {
    __m256i sum[M][kSums];
    for (auto& row : sum)
      for (auto& v : row) v = _mm256_setzero_si256();
    float d = 0.0f;
    alignas(32) float mins[16];
    D::each(w, [&](int g, const Group& gr) {
      d = gr.scale;
      if constexpr (D::kMins) {
        mins[2 * g] = gr.min_lo;
        mins[2 * g + 1] = gr.min_hi;
      }
      for (int t = 0; t < M; ++t) {
        const int16_t* xq = x[t * stride + blk].qs + 32 * g;
        const __m256i p = _mm256_add_epi32(_mm256_madd_epi16(gr.lo, load32(xq)), _mm256_madd_epi16(gr.hi, load32(xq + 16)));
        sum[t][g % kSums] = _mm256_add_epi32(sum[t][g % kSums], p);
      }
    });
    for (int t = 0; t < M; ++t) {
      const BlockQ16K& a = x[t * stride + blk];
      const __m256i s = kSums == 2 ? _mm256_add_epi32(sum[t][0], sum[t][kSums - 1]) : sum[t][0];
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d * a.d), _mm256_cvtepi32_ps(s), acc[t]);
      if constexpr (D::kMins) {
        min_acc[t] = _mm256_fmadd_ps(_mm256_load_ps(mins), _mm256_loadu_ps(a.hsum), min_acc[t]);
        min_acc[t] = _mm256_fmadd_ps(_mm256_load_ps(mins + 8), _mm256_loadu_ps(a.hsum + 8), min_acc[t]);
      }
    }
  }
  for (int t = 0; t < M; ++t) out[t] = hsum(_mm256_sub_ps(acc[t], min_acc[t]));
}

template <class D>
void dot_super(int64_t n, const void* w, const void* xq, int64_t x_bytes, int n_tokens, float* out) {
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* x = static_cast<const BlockQ16K*>(xq);
  const int64_t stride = x_bytes / static_cast<int64_t>(sizeof(BlockQ16K));
  in_fours(n_tokens, [&]<int M>(int t) { dot_super_m<D, M>(n, wb, x + t * stride, stride, out + t); });
}

// ---- dequantization for the prompt path (tiles of rows into the f32 matmul) ----

inline void store16(__m256i v, float scale, float min, float* out) {
  const __m256 s = _mm256_set1_ps(scale), m = _mm256_set1_ps(min);
  const __m256 a = _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(_mm256_castsi256_si128(v)));
  const __m256 b = _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(_mm256_extracti128_si256(v, 1)));
  _mm256_storeu_ps(out, _mm256_fmsub_ps(a, s, m));
  _mm256_storeu_ps(out + 8, _mm256_fmsub_ps(b, s, m));
}

template <class D>
void dequant(const void* w, float* out, int64_t n) {
  const auto* b = static_cast<const uint8_t*>(w);
  for (int64_t blk = 0; blk < n / D::kBlock; ++blk, b += D::kBytes, out += D::kBlock)
    D::each(b, [&](int g, const Group& gr) {
      store16(gr.lo, gr.scale, gr.min_lo, out + 32 * g);
      store16(gr.hi, gr.scale, gr.min_hi, out + 32 * g + 16);
    });
}

}  // namespace

QuantDequantFn quant_dequant_avx2(uint32_t ggml_type) {
  return for_ggml_type<QuantDequantFn>(ggml_type, []<class D>() -> QuantDequantFn { return dequant<D>; });
}

QuantDotFn quant_dot_avx2(uint32_t ggml_type) {
  // The 256-weight blocks (K-quants, IQ4_XS) take the super-block kernels (ActLayout::kQ16K).
  return for_ggml_type<QuantDotFn>(ggml_type, []<class D>() -> QuantDotFn {
    if constexpr (D::kBlock == 256) return dot_super<D>;
    else return dot<D>;
  });
}

}  // namespace quanta::kernels
