// AVX-512 group-wise integer kernels (group_int.h). Decoding: a 32-block of codes
// is one zmm of int16 against the token's 32 activations, one vpdpwssd, exact in
// int32 until the activation block ends. Prompts: the VNNI panel GEMM
// (panel_gemm_avx512.h) with the activation block as its window, twice the f32
// FMA rate and half the decoded bytes of an f32 tile.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "quanta/kernels/group_int.h"

namespace quanta::kernels {

namespace {

// Codes of 32-block b as 32 int16 in element order.
inline __m512i codes16(bool codes4, const uint8_t* q, int64_t b) {
  if (codes4) {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + b * 16));
    const __m128i m4 = _mm_set1_epi8(0x0F);
    const __m128i lo = _mm_and_si128(raw, m4), hi = _mm_and_si128(_mm_srli_epi16(raw, 4), m4);
    return _mm512_cvtepu8_epi16(_mm256_set_m128i(hi, lo));
  }
  return _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + b * 32)));
}

constexpr int kPrefetchBytes = 2048;

// M tokens (M <= 4). One token alternates two accumulators (vpdpwssd's latency).
template <bool kCodes4, int M>
void dot_m(int64_t n, int64_t group, const uint8_t* q, const float* sm, const GroupIntActs& x, int t0,
           float* out) {
  constexpr int kAcc = M == 1 ? 2 : M;
  const int64_t n_blocks = n / x.block, per_block = x.block / 32;
  const int16_t* xq[M];
  for (int t = 0; t < M; ++t) xq[t] = x.q + (t0 + t) * n;
  __m512 acc[M];
  float mins[M];
  for (int t = 0; t < M; ++t) {
    acc[t] = _mm512_setzero_ps();
    mins[t] = 0.0f;
  }
  const int64_t per_group = group / x.block;  // activation blocks per weight group
  for (int64_t b = 0, blk = 0, g = 0, in_group = 0; b < n_blocks; ++b) {
    // Rows follow one another: fetch ahead of the stream (the kernel waits on memory otherwise).
    const int64_t bytes = kCodes4 ? 16 : 32;
    for (int64_t off = 0; off < per_block * bytes; off += 64)
      _mm_prefetch(reinterpret_cast<const char*>(q + blk * bytes) + kPrefetchBytes + off, _MM_HINT_T0);
    __m512i isum[kAcc];
    for (auto& v : isum) v = _mm512_setzero_si512();
    int64_t i = 0;
    if constexpr (M == 1) {
      for (; i + 2 <= per_block; i += 2, blk += 2) {
        isum[0] = _mm512_dpwssd_epi32(isum[0], codes16(kCodes4, q, blk), _mm512_loadu_si512(xq[0] + blk * 32));
        isum[1] = _mm512_dpwssd_epi32(isum[1], codes16(kCodes4, q, blk + 1),
                                      _mm512_loadu_si512(xq[0] + blk * 32 + 32));
      }
    }
    for (; i < per_block; ++i, ++blk) {
      const __m512i c = codes16(kCodes4, q, blk);
      for (int t = 0; t < M; ++t)
        isum[t] = _mm512_dpwssd_epi32(isum[t], c, _mm512_loadu_si512(xq[t] + blk * 32));
    }
    if constexpr (M == 1) isum[0] = _mm512_add_epi32(isum[0], isum[1]);
    const int64_t at = t0 * n_blocks + b;
    for (int t = 0; t < M; ++t) {
      acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(sm[2 * g] * x.d[at + t * n_blocks]), _mm512_cvtepi32_ps(isum[t]),
                               acc[t]);
      mins[t] += sm[2 * g + 1] * x.dsum[at + t * n_blocks];
    }
    if (++in_group == per_group) in_group = 0, ++g;
  }
  for (int t = 0; t < M; ++t) out[t] = _mm512_reduce_add_ps(acc[t]) - mins[t];
}

// 4-bit codes against split activations (block 128: four 32-blocks, 64 bytes of
// codes): the low nibbles and the high nibbles each meet the activations' low
// bytes (unsigned, codes as signed) and high bytes (signed, codes as unsigned)
// in vpdpbusd, so the codes are never widened. Four accumulators per token keep
// the multiply-adds independent.
template <int M>
void dot_split_m(int64_t n, int64_t group, const uint8_t* q, const float* sm, const GroupIntActs& x, int t0,
                 float* out) {
  const int64_t n_blocks = n / 128, per_group = group / 128;
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  const uint8_t* xs[M];
  for (int t = 0; t < M; ++t) xs[t] = x.split + (t0 + t) * n_blocks * 256;
  __m512 acc[M];
  float mins[M];
  for (int t = 0; t < M; ++t) {
    acc[t] = _mm512_setzero_ps();
    mins[t] = 0.0f;
  }
  for (int64_t b = 0, g = 0, in_group = 0; b < n_blocks; ++b) {
    _mm_prefetch(reinterpret_cast<const char*>(q + b * 64) + kPrefetchBytes, _MM_HINT_T0);
    const __m512i v = _mm512_loadu_si512(q + b * 64);
    const __m512i lo = _mm512_and_si512(v, m4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
    const int64_t at = t0 * n_blocks + b;
    for (int t = 0; t < M; ++t) {
      const uint8_t* p = xs[t] + b * 256;
      const __m512i ll = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_loadu_si512(p), lo);
      const __m512i hl = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_loadu_si512(p + 64), hi);
      const __m512i lh = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, _mm512_loadu_si512(p + 128));
      const __m512i hh = _mm512_dpbusd_epi32(_mm512_setzero_si512(), hi, _mm512_loadu_si512(p + 192));
      const __m512i isum =
          _mm512_add_epi32(_mm512_slli_epi32(_mm512_add_epi32(lh, hh), 8), _mm512_add_epi32(ll, hl));
      acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(sm[2 * g] * x.d[at + t * n_blocks]), _mm512_cvtepi32_ps(isum),
                               acc[t]);
      mins[t] += sm[2 * g + 1] * x.dsum[at + t * n_blocks];
    }
    if (++in_group == per_group) in_group = 0, ++g;
  }
  for (int t = 0; t < M; ++t) out[t] = _mm512_reduce_add_ps(acc[t]) - mins[t];
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

#include "quanta/kernels/x86/panel_gemm_avx512.h"

static_assert(kPanelRows == group_int_gemm_rows);

// GroupIntActs as panel_gemm reads them: the window is the activation block.
struct BlockActs {
  const GroupIntActs& x;
  int64_t n, n_blocks;
  const int16_t* pairs(int64_t t, int64_t i) const { return x.q + t * n + i * x.block; }
  float d(int64_t t, int64_t i) const { return x.d[t * n_blocks + i]; }
  float dsum(int64_t t, int64_t i) const { return x.dsum[t * n_blocks + i]; }
};

void gemm(bool codes4, int64_t n, int64_t group, const uint8_t* q, int64_t row_bytes, const float* sm, int rows,
          const GroupIntActs& x, int64_t n_tokens, float* y, int64_t y_stride) {
  thread_local Panel panel;
  panel.reset(n, x.block, rows);
  const int64_t n_groups = n / group;
  for (int r = 0; r < rows; ++r) {
    const uint8_t* qr = q + r * row_bytes;
    for (int64_t b = 0; b < n / 32; ++b) panel.put_codes(r, 32 * b, codes16(codes4, qr, b));
    const float* smr = sm + r * n_groups * 2;
    for (int64_t b = 0; b < n / x.block; ++b) {
      const int64_t g = b * x.block / group;
      panel.put_scale(r, b, smr[2 * g], smr[2 * g + 1]);
    }
  }
  panel_gemm<true>(panel, BlockActs{x, n, n / x.block}, rows, n_tokens, y, y_stride);
}

}  // namespace

const GroupIntKernels& group_int_avx512_table() {
  static const GroupIntKernels t{Isa::kAvx512, dot, group_int_avx2_table().dequant, true, gemm};
  return t;
}

}  // namespace quanta::kernels
