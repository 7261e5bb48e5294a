// AVX2 group-wise integer kernels (group_int.h): codes widened to 16 bits meet
// the 16-bit activations in vpmaddwd (exact int32 sums per activation block), then
// per block and token one float multiply-add for both scales and one for the zero
// point (through the block's sum). Up to four tokens share each decoded 32-block.
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

// M tokens (M <= 4) from token t0. Within an activation block the products sum
// exactly in int32; each block's sum then meets both scales in one multiply-add.
template <bool kCodes4, int M>
void dot_m(int64_t n, int64_t group, const uint8_t* q, const float* sm, const GroupIntActs& x, int t0,
           float* out) {
  const int64_t n_blocks = n / x.block, per_block = x.block / 32;
  const int16_t* xq[M];
  for (int t = 0; t < M; ++t) xq[t] = x.q + (t0 + t) * n;
  __m256 acc[M];
  float mins[M];
  for (int t = 0; t < M; ++t) {
    acc[t] = _mm256_setzero_ps();
    mins[t] = 0.0f;
  }
  const int64_t per_group = group / x.block;  // activation blocks per weight group
  for (int64_t b = 0, blk = 0, g = 0, in_group = 0; b < n_blocks; ++b) {
    __m256i isum[M];
    for (auto& v : isum) v = _mm256_setzero_si256();
    for (int64_t i = 0; i < per_block; ++i, ++blk) {
      __m256i lo, hi;
      codes<kCodes4>(q, blk, lo, hi);
      for (int t = 0; t < M; ++t) {
        const int16_t* p = xq[t] + blk * 32;
        isum[t] = _mm256_add_epi32(
            isum[t], _mm256_add_epi32(_mm256_madd_epi16(lo, load32(p)), _mm256_madd_epi16(hi, load32(p + 16))));
      }
    }
    const int64_t at = t0 * n_blocks + b;
    for (int t = 0; t < M; ++t) {
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(sm[2 * g] * x.d[at + t * n_blocks]), _mm256_cvtepi32_ps(isum[t]),
                               acc[t]);
      mins[t] += sm[2 * g + 1] * x.dsum[at + t * n_blocks];
    }
    if (++in_group == per_group) in_group = 0, ++g;
  }
  for (int t = 0; t < M; ++t) out[t] = hsum(acc[t]) - mins[t];
}

template <bool kCodes4>
void dot_tokens(int64_t n, int64_t group, const uint8_t* q, const float* sm, const GroupIntActs& x, int n_tokens,
                float* out) {
  int t = 0;
  for (; t + 4 <= n_tokens; t += 4) dot_m<kCodes4, 4>(n, group, q, sm, x, t, out + t);
  switch (n_tokens - t) {
    case 3: dot_m<kCodes4, 3>(n, group, q, sm, x, t, out + t); break;
    case 2: dot_m<kCodes4, 2>(n, group, q, sm, x, t, out + t); break;
    case 1: dot_m<kCodes4, 1>(n, group, q, sm, x, t, out + t); break;
    default: break;
  }
}

void dot(bool codes4, int64_t n, int64_t group, const uint8_t* q, const float* sm, const GroupIntActs& x,
         int n_tokens, float* out) {
  if (codes4) dot_tokens<true>(n, group, q, sm, x, n_tokens, out);
  else dot_tokens<false>(n, group, q, sm, x, n_tokens, out);
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
  static const GroupIntKernels t{Isa::kAvx2, dot, dequant, nullptr};
  return t;
}

}  // namespace quanta::kernels
