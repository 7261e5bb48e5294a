// AVX-512 dot products of ggml weight blocks with 16-bit activation blocks.
//
// The same decoders as AVX2 (quant_decoders.h), but a 32-weight group is one
// 512-bit register of 16-bit integers: one vpmaddwd per group and token gives 16
// exact 32-bit sums (AVX2 needs two and an add), and the float multiply-add that
// applies the group's and the activation block's scales covers 16 lanes.
#include <immintrin.h>

#include <cstring>

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

#include "quanta/kernels/x86/quant_decoders.h"

constexpr int kPrefetchBytes = 2048;

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
void dot(int64_t n, const void* w, const BlockQ16* x, int64_t stride, int n_tokens, float* out) {
  const auto* wb = static_cast<const uint8_t*>(w);
  int t = 0;
  for (; t + 4 <= n_tokens; t += 4) dot_m<D, 4>(n, wb, x + t * stride, stride, out + t);
  switch (n_tokens - t) {
    case 3: dot_m<D, 3>(n, wb, x + t * stride, stride, out + t); break;
    case 2: dot_m<D, 2>(n, wb, x + t * stride, stride, out + t); break;
    case 1: dot_m<D, 1>(n, wb, x + t * stride, stride, out + t); break;
    default: break;
  }
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

}  // namespace

QuantDequantFn quant_dequant_avx512(uint32_t ggml_type) {
  return for_ggml_type<QuantDequantFn>(ggml_type, []<class D>() -> QuantDequantFn { return dequant<D>; });
}

QuantDotFn quant_dot_avx512(uint32_t ggml_type) {
  return for_ggml_type<QuantDotFn>(ggml_type, []<class D>() -> QuantDotFn { return dot<D>; });
}

}  // namespace quanta::kernels
