// AVX-512 group-wise integer kernels (group_int.h). Decoding: a 32-block of codes
// is one zmm of int16 against the token's 32 activations, one vpdpwssd, exact in
// int32 until the activation block ends. Prompts get a VNNI GEMM: a panel of 32 rows is decoded once per call
// into 16-bit codes laid out as vpdpwssd wants them (for each pair of inputs,
// the 32 rows' two codes side by side), and every token's 16-bit activation
// pair is broadcast against it: exact int32 sums per activation block, then one
// float multiply-add for the scales and one for the zero points per block,
// row and token. That is twice the f32 FMA rate and half the decoded bytes of
// an f32 tile.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "quanta/kernels/group_int.h"

namespace quanta::kernels {

namespace {

constexpr int kRows = group_int_gemm_rows;  // two zmm of int32 lanes
constexpr int kTokens = 6;                  // 12 int32 + 12 f32 accumulators

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

// The panel: w[p * kRows + r] holds row r's codes 2p and 2p + 1; s / sz[b * kRows + r]
// its scale and scale * zero for activation block b. Rows past `rows` are zero.
struct Panel {
  std::vector<int32_t> w;
  std::vector<float> s, sz;
};

void decode_panel(bool codes4, int64_t n, int64_t group, const uint8_t* q, int64_t row_bytes, const float* sm,
                  int rows, int64_t block, Panel& p) {
  const int64_t pairs = n / 2, n_blocks = n / block, n_groups = n / group;
  p.w.assign(static_cast<size_t>(pairs * kRows), 0);
  p.s.assign(static_cast<size_t>(n_blocks * kRows), 0.0f);
  p.sz.assign(static_cast<size_t>(n_blocks * kRows), 0.0f);
  alignas(64) int32_t tmp[16];
  for (int r = 0; r < rows; ++r) {
    const uint8_t* qr = q + r * row_bytes;
    int32_t* dst = p.w.data() + r;
    for (int64_t b = 0; b < n / 32; ++b) {
      _mm512_store_si512(tmp, codes16(codes4, qr, b));
      for (int j = 0; j < 16; ++j) dst[(b * 16 + j) * kRows] = tmp[j];
    }
    const float* smr = sm + r * n_groups * 2;
    for (int64_t b = 0; b < n_blocks; ++b) {
      const int64_t g = b * block / group;
      p.s[b * kRows + r] = smr[2 * g];
      p.sz[b * kRows + r] = smr[2 * g + 1];
    }
  }
}

// Tokens [t0, t0 + T) over activation blocks [b0, b1): y starts from zero when
// b0 is 0, else from what the earlier blocks left there.
template <int T>
void tokens_tile(const Panel& p, int64_t n, const GroupIntActs& x, int64_t t0, int64_t b0, int64_t b1, float* y,
                 int64_t y_stride, __mmask16 m0, __mmask16 m1) {
  const int64_t n_blocks = n / x.block, half = x.block / 2;
  const int16_t* xq[T];
  for (int t = 0; t < T; ++t) xq[t] = x.q + (t0 + t) * n;
  __m512 f0[T], f1[T];
  for (int t = 0; t < T; ++t) {
    float* yt = y + (t0 + t) * y_stride;
    f0[t] = b0 == 0 ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m0, yt);
    f1[t] = b0 == 0 ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m1, yt + 16);
  }
  const int32_t* w = p.w.data();
  for (int64_t b = b0; b < b1; ++b) {
    __m512i a0[T], a1[T];
    for (int t = 0; t < T; ++t) a0[t] = a1[t] = _mm512_setzero_si512();
    for (int64_t k = b * half; k < (b + 1) * half; ++k) {
      const __m512i w0 = _mm512_loadu_si512(w + k * kRows), w1 = _mm512_loadu_si512(w + k * kRows + 16);
      for (int t = 0; t < T; ++t) {
        int32_t pair;
        std::memcpy(&pair, xq[t] + 2 * k, sizeof pair);
        const __m512i xb = _mm512_set1_epi32(pair);
        a0[t] = _mm512_dpwssd_epi32(a0[t], w0, xb);
        a1[t] = _mm512_dpwssd_epi32(a1[t], w1, xb);
      }
    }
    const __m512 s0 = _mm512_loadu_ps(p.s.data() + b * kRows), s1 = _mm512_loadu_ps(p.s.data() + b * kRows + 16);
    const __m512 z0 = _mm512_loadu_ps(p.sz.data() + b * kRows), z1 = _mm512_loadu_ps(p.sz.data() + b * kRows + 16);
    for (int t = 0; t < T; ++t) {
      const __m512 d = _mm512_set1_ps(x.d[(t0 + t) * n_blocks + b]);
      const __m512 e = _mm512_set1_ps(x.dsum[(t0 + t) * n_blocks + b]);
      f0[t] = _mm512_fnmadd_ps(z0, e, _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(a0[t]), s0), d, f0[t]));
      f1[t] = _mm512_fnmadd_ps(z1, e, _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(a1[t]), s1), d, f1[t]));
    }
  }
  for (int t = 0; t < T; ++t) {
    _mm512_mask_storeu_ps(y + (t0 + t) * y_stride, m0, f0[t]);
    _mm512_mask_storeu_ps(y + (t0 + t) * y_stride + 16, m1, f1[t]);
  }
}

// Inputs are taken about 1024 at a time, so that the panel's slice (64 KB) and six
// tokens' activations (12 KB) stay in L1/L2 while every token passes over them.
constexpr int64_t kChunk = 1024;

void gemm(bool codes4, int64_t n, int64_t group, const uint8_t* q, int64_t row_bytes, const float* sm, int rows,
          const GroupIntActs& x, int64_t n_tokens, float* y, int64_t y_stride) {
  thread_local Panel panel;
  decode_panel(codes4, n, group, q, row_bytes, sm, rows, x.block, panel);
  const __mmask16 m0 = static_cast<__mmask16>(rows >= 16 ? 0xFFFF : (1u << rows) - 1);
  const __mmask16 m1 = static_cast<__mmask16>(rows >= 32 ? 0xFFFF : rows <= 16 ? 0 : (1u << (rows - 16)) - 1);
  const int64_t n_blocks = n / x.block, chunk = std::max<int64_t>(1, kChunk / x.block);
  for (int64_t b0 = 0; b0 < n_blocks; b0 += chunk) {
    const int64_t b1 = std::min(n_blocks, b0 + chunk);
    int64_t t = 0;
    for (; t + kTokens <= n_tokens; t += kTokens) tokens_tile<kTokens>(panel, n, x, t, b0, b1, y, y_stride, m0, m1);
    switch (n_tokens - t) {
      case 5: tokens_tile<5>(panel, n, x, t, b0, b1, y, y_stride, m0, m1); break;
      case 4: tokens_tile<4>(panel, n, x, t, b0, b1, y, y_stride, m0, m1); break;
      case 3: tokens_tile<3>(panel, n, x, t, b0, b1, y, y_stride, m0, m1); break;
      case 2: tokens_tile<2>(panel, n, x, t, b0, b1, y, y_stride, m0, m1); break;
      case 1: tokens_tile<1>(panel, n, x, t, b0, b1, y, y_stride, m0, m1); break;
      default: break;
    }
  }
}

}  // namespace

const GroupIntKernels& group_int_avx512_table() {
  static const GroupIntKernels t{Isa::kAvx512, dot, group_int_avx2_table().dequant, true, gemm};
  return t;
}

}  // namespace quanta::kernels
