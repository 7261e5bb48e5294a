// AVX2 group-wise integer kernels (group_int.h): codes widened to 16 bits meet
// the 16-bit activations in vpmaddwd (exact int32 sums per activation block), then
// per block and token one float multiply-add for both scales and one for the zero
// point (through the block's sum). Up to four tokens share each decoded 32-block.
// 4-bit codes in blocks of 128 skip the widening (dot_split_m).
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

// 4-bit codes against split activations (block 128, group_int.h): vpmaddubsw
// multiplies the nibbles, unwidened, with the activations' low bytes (unsigned)
// and high bytes (signed). No int16 sum can saturate: four pairs of 15 x 255 are
// 30600, four of 15 x 128 are 15360.
template <int M>
void dot_split_m(int64_t n, int64_t group, const uint8_t* q, const float* sm, const GroupIntActs& x, int t0,
                 float* out) {
  const int64_t n_blocks = n / 128, per_group = group / 128;
  const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
  const uint8_t* xs[M];
  for (int t = 0; t < M; ++t) xs[t] = x.split + (t0 + t) * n_blocks * 256;
  __m256 acc[M];
  float mins[M];
  for (int t = 0; t < M; ++t) {
    acc[t] = _mm256_setzero_ps();
    mins[t] = 0.0f;
  }
  const auto ld = [](const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); };
  for (int64_t b = 0, g = 0, in_group = 0; b < n_blocks; ++b) {
    const __m256i v0 = ld(q + b * 64), v1 = ld(q + b * 64 + 32);
    const __m256i lo0 = _mm256_and_si256(v0, m4), hi0 = _mm256_and_si256(_mm256_srli_epi16(v0, 4), m4);
    const __m256i lo1 = _mm256_and_si256(v1, m4), hi1 = _mm256_and_si256(_mm256_srli_epi16(v1, 4), m4);
    const int64_t at = t0 * n_blocks + b;
    for (int t = 0; t < M; ++t) {
      const uint8_t* p = xs[t] + b * 256;
      const __m256i l16 = _mm256_add_epi16(
          _mm256_add_epi16(_mm256_maddubs_epi16(ld(p), lo0), _mm256_maddubs_epi16(ld(p + 32), lo1)),
          _mm256_add_epi16(_mm256_maddubs_epi16(ld(p + 64), hi0), _mm256_maddubs_epi16(ld(p + 96), hi1)));
      const __m256i h16 = _mm256_add_epi16(
          _mm256_add_epi16(_mm256_maddubs_epi16(lo0, ld(p + 128)), _mm256_maddubs_epi16(lo1, ld(p + 160))),
          _mm256_add_epi16(_mm256_maddubs_epi16(hi0, ld(p + 192)), _mm256_maddubs_epi16(hi1, ld(p + 224))));
      const __m256i isum = _mm256_add_epi32(_mm256_slli_epi32(_mm256_madd_epi16(h16, ones), 8),
                                            _mm256_madd_epi16(l16, ones));
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(sm[2 * g] * x.d[at + t * n_blocks]), _mm256_cvtepi32_ps(isum),
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
  if (codes4 && x.split && x.block == 128) {
    int t = 0;
    for (; t + 4 <= n_tokens; t += 4) dot_split_m<4>(n, group, q, sm, x, t, out + t);
    switch (n_tokens - t) {
      case 3: dot_split_m<3>(n, group, q, sm, x, t, out + t); break;
      case 2: dot_split_m<2>(n, group, q, sm, x, t, out + t); break;
      case 1: dot_split_m<1>(n, group, q, sm, x, t, out + t); break;
      default: break;
    }
    return;
  }
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
  static const GroupIntKernels t{Isa::kAvx2, dot, dequant, true, nullptr};
  return t;
}

}  // namespace quanta::kernels
