// AVX2 group-wise integer kernels (group_int.h): codes widened to 16 bits meet
// the 16-bit activation blocks in vpmaddwd (exact int32 sums per 32-block), one
// float multiply-add per block and token for the activation scale, and per group
// one for the weight scale and one for the zero point (through the blocks' sums).
// Up to four tokens share each decoded block.
#include <immintrin.h>

#include "quanta/kernels/group_int.h"

namespace quanta::kernels {

namespace {

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Codes of 32-block b as two halves of 16-bit integers (elements 0..15, 16..31).
template <bool kCodes4>
inline void codes(const uint8_t* q, int64_t b, __m256i& lo, __m256i& hi) {
  if constexpr (kCodes4) {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + b * 16));
    const __m128i m4 = _mm_set1_epi8(0x0F);
    lo = _mm256_cvtepu8_epi16(_mm_and_si128(raw, m4));
    hi = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), m4));
  } else {
    const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + b * 32));
    lo = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(raw));
    hi = _mm256_cvtepu8_epi16(_mm256_extracti128_si256(raw, 1));
  }
}

inline __m256i load32(const int16_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }

// M tokens (M <= 4). Within a group the blocks accumulate d_x * sum(q * x_q);
// the group's scale multiplies that once. One token alternates two accumulators.
template <bool kCodes4, int M>
void dot_m(int64_t n, int64_t group, const uint8_t* q, const float* sm, const BlockQ16* x, int64_t stride,
           float* out) {
  constexpr int kAcc = M == 1 ? 2 : M;
  __m256 acc[M];
  float mins[M];
  for (int t = 0; t < M; ++t) {
    acc[t] = _mm256_setzero_ps();
    mins[t] = 0.0f;
  }
  const int64_t per_group = group / 32;
  for (int64_t g = 0, b = 0; g < n / group; ++g) {
    __m256 gacc[kAcc];
    float xsum[M];
    for (auto& a : gacc) a = _mm256_setzero_ps();
    for (auto& s : xsum) s = 0.0f;
    for (int64_t i = 0; i < per_group; ++i, ++b) {
      __m256i lo, hi;
      codes<kCodes4>(q, b, lo, hi);
      for (int t = 0; t < M; ++t) {
        const BlockQ16& a = x[t * stride + b];
        const __m256i isum =
            _mm256_add_epi32(_mm256_madd_epi16(lo, load32(a.qs)), _mm256_madd_epi16(hi, load32(a.qs + 16)));
        const int k = M == 1 ? static_cast<int>(i & 1) : t;
        gacc[k] = _mm256_fmadd_ps(_mm256_set1_ps(a.d), _mm256_cvtepi32_ps(isum), gacc[k]);
        xsum[t] += a.dsum[0] + a.dsum[1];
      }
    }
    if constexpr (M == 1) gacc[0] = _mm256_add_ps(gacc[0], gacc[1]);
    const __m256 s = _mm256_set1_ps(sm[2 * g]);
    for (int t = 0; t < M; ++t) {
      acc[t] = _mm256_fmadd_ps(s, gacc[t], acc[t]);
      mins[t] += sm[2 * g + 1] * xsum[t];
    }
  }
  for (int t = 0; t < M; ++t) out[t] = hsum(acc[t]) - mins[t];
}

template <bool kCodes4>
void dot_tokens(int64_t n, int64_t group, const uint8_t* q, const float* sm, const BlockQ16* x, int64_t stride,
                int n_tokens, float* out) {
  int t = 0;
  for (; t + 4 <= n_tokens; t += 4) dot_m<kCodes4, 4>(n, group, q, sm, x + t * stride, stride, out + t);
  switch (n_tokens - t) {
    case 3: dot_m<kCodes4, 3>(n, group, q, sm, x + t * stride, stride, out + t); break;
    case 2: dot_m<kCodes4, 2>(n, group, q, sm, x + t * stride, stride, out + t); break;
    case 1: dot_m<kCodes4, 1>(n, group, q, sm, x + t * stride, stride, out + t); break;
    default: break;
  }
}

void dot(bool codes4, int64_t n, int64_t group, const uint8_t* q, const float* sm, const BlockQ16* x,
         int64_t stride, int n_tokens, float* out) {
  if (codes4) dot_tokens<true>(n, group, q, sm, x, stride, n_tokens, out);
  else dot_tokens<false>(n, group, q, sm, x, stride, n_tokens, out);
}

inline void store16(__m256i v, __m256 s, __m256 sz, float* out) {
  const __m256 a = _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(_mm256_castsi256_si128(v)));
  const __m256 b = _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(_mm256_extracti128_si256(v, 1)));
  _mm256_storeu_ps(out, _mm256_fmsub_ps(a, s, sz));
  _mm256_storeu_ps(out + 8, _mm256_fmsub_ps(b, s, sz));
}

template <bool kCodes4>
void dequant_t(const uint8_t* q, const float* sm, int64_t group, int64_t k0, int64_t len, float* out) {
  for (int64_t k = k0; k < k0 + len; k += 32, out += 32) {
    const int64_t g = k / group;
    const __m256 s = _mm256_set1_ps(sm[2 * g]), sz = _mm256_set1_ps(sm[2 * g + 1]);
    __m256i lo, hi;
    codes<kCodes4>(q, k / 32, lo, hi);
    store16(lo, s, sz, out);
    store16(hi, s, sz, out + 16);
  }
}

void dequant(bool codes4, const uint8_t* q, const float* sm, int64_t group, int64_t k0, int64_t len, float* out) {
  if (codes4) dequant_t<true>(q, sm, group, k0, len, out);
  else dequant_t<false>(q, sm, group, k0, len, out);
}

}  // namespace

const GroupIntKernels& group_int_avx2_table() {
  static const GroupIntKernels t{Isa::kAvx2, dot, dequant};
  return t;
}

}  // namespace quanta::kernels
