// AVX-512 tier of the quantized-Linear primitives, on VNNI's vpdpbusd (unsigned by signed
// bytes, quads added into int32 in one instruction; AVX2 needs vpmaddubsw + vpmaddwd + vpaddd):
// - gemm_s8 (W8A8 / W8A8_DYNAMIC): decoding at 256 bits with the sign trick (vpsignb has no
//   512-bit form) and a prefetch 2 KB ahead on each of the four weight rows it streams;
//   batches of 4+ tokens at 512 bits on unsigned-flipped activations (below);
// - gemm_u4 (W4A4_DYNAMIC): batches of 4+ tokens at 512 bits, decoding on AVX2's kernel.
// The other primitives are AVX2's.
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "quanta/kernels/quant_linear.h"

namespace quanta::kernels {
namespace {

inline int32_t hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

struct VnniDot {
  // No int16 step, so no saturation: exact for any w in [-128, 127], x in [-127, 127].
  static __m256i acc(__m256i acc, __m256i uw, __m256i w, __m256i x) {
    return _mm256_dpbusd_epi32(acc, uw, _mm256_sign_epi8(x, w));
  }
  static void prefetch(const int8_t* p) { _mm_prefetch(reinterpret_cast<const char*>(p) + 2048, _MM_HINT_T0); }
};

#include "quanta/kernels/x86/gemm_s8_body.h"

// Batches of tokens: the activations are made unsigned once per call (x ^ 0x80 is x + 128),
// so vpdpbusd takes them as its unsigned operand and the weights as they are, at 512 bits and
// without the sign trick: one zmm holds 32 columns of two rows (the activation's 32 bytes are
// broadcast to both halves), and 128 * sum_k w of each row comes off at the end. A tile is 8
// (or 4) rows x T tokens (4T or 2T accumulators), so each weight load serves T tokens and each
// activation load 8 rows.
constexpr int kTileTokens = 4;

// Row r's 32 bytes at column k sit at w[r] + k * ks (see gemm_s8_tokens).
inline __m512i two_rows(const int8_t* r0, const int8_t* r1, int64_t off) {
  return _mm512_inserti64x4(_mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(r0 + off))),
                            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r1 + off)), 1);
}

// Packed quads (pack_rows4) hold rows 2p and 2p + 1 in 64 adjacent bytes: one load.
template <bool Packed, int Q, int T>
void tile_u8(const uint8_t* xu, int64_t ldx, const int8_t* const* wr, int64_t ks, int64_t k32, const int32_t* rsum,
             int32_t* out, int64_t ld_out) {
  __m512i acc[T][2 * Q];
  for (auto& a : acc)
    for (auto& v : a) v = _mm512_setzero_si512();
  for (int64_t k = 0; k < k32; k += 32) {
    __m512i w[2 * Q];
    for (int p = 0; p < 2 * Q; ++p) {
      if (p % 2 == 0) _mm_prefetch(reinterpret_cast<const char*>(wr[2 * p] + k * ks) + 2048, _MM_HINT_T0);
      w[p] = Packed ? _mm512_loadu_si512(wr[2 * p] + k * 4) : two_rows(wr[2 * p], wr[2 * p + 1], k * ks);
    }
    for (int t = 0; t < T; ++t) {
      const __m512i xb = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xu + t * ldx + k)));
      for (int p = 0; p < 2 * Q; ++p) acc[t][p] = _mm512_dpbusd_epi32(acc[t][p], xb, w[p]);
    }
  }
  for (int t = 0; t < T; ++t)
    for (int p = 0; p < 2 * Q; ++p) {
      out[t * ld_out + 2 * p] = hsum_epi32(_mm512_castsi512_si256(acc[t][p])) - 128 * rsum[2 * p];
      out[t * ld_out + 2 * p + 1] = hsum_epi32(_mm512_extracti64x4_epi64(acc[t][p], 1)) - 128 * rsum[2 * p + 1];
    }
}

using TileFn = void (*)(const uint8_t*, int64_t, const int8_t* const*, int64_t, int64_t, const int32_t*, int32_t*, int64_t);
template <bool Packed, int Q>
constexpr TileFn kTiles[kTileTokens + 1] = {nullptr, tile_u8<Packed, Q, 1>, tile_u8<Packed, Q, 2>, tile_u8<Packed, Q, 3>,
                                            tile_u8<Packed, Q, 4>};

// Tokens [t_begin, t_end), rows in groups of 8 or 4; the rows left over go to gemm_s8_tokens.
void gemm_s8_batch(const GemmS8Args& a, int64_t t_begin, int64_t t_end) {
  const int64_t k32 = a.k & ~int64_t{31}, nt = t_end - t_begin;
  thread_local std::vector<uint8_t> xu;
  xu.resize(static_cast<size_t>(nt * k32));
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
  for (int64_t t = 0; t < nt; ++t)
    for (int64_t k = 0; k < k32; k += 32) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.x + (t_begin + t) * a.ldx + k));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(xu.data() + t * k32 + k), _mm256_xor_si256(v, flip));
    }
  const __m256i ones = _mm256_set1_epi8(1);
  // Rows in groups of 8 (two quads) where they can, else 4.
  int64_t n = a.n0;
  while (n + 4 <= a.n1) {
    const int quads = n + 8 <= a.n1 && (n >= a.rows4 || n + 8 <= a.rows4) ? 2 : 1;
    const int64_t ks = n < a.rows4 ? 4 : 1;
    const int8_t* wr[8];
    int32_t rsum[8];
    for (int r = 0; r < 4 * quads; ++r) {
      wr[r] = ks == 4 ? a.w + (n + r / 4 * 4) * a.ldw + r % 4 * 32 : a.w + (n + r) * a.ldw;
      __m256i s = _mm256_setzero_si256();
      for (int64_t k = 0; k < k32; k += 32)
        s = _mm256_dpbusd_epi32(s, ones, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wr[r] + k * ks)));
      rsum[r] = hsum_epi32(s);
    }
    int32_t* o = a.out + t_begin * a.ld_out + (n - a.n0);
    const TileFn* tiles = ks == 4 ? (quads == 2 ? kTiles<true, 2> : kTiles<true, 1>)
                                  : (quads == 2 ? kTiles<false, 2> : kTiles<false, 1>);
    for (int64_t t = 0; t < nt; t += kTileTokens) {
      const int64_t m = std::min<int64_t>(kTileTokens, nt - t);
      tiles[m](xu.data() + t * k32, k32, wr, ks, k32, rsum, o + t * a.ld_out, a.ld_out);
    }
    // Columns past the last 32 (plain rows only), with the signed activations.
    for (int64_t t = t_begin; t < t_end; ++t)
      for (int r = 0; r < 4 * quads; ++r)
        for (int64_t k = k32; k < a.k; ++k) a.out[t * a.ld_out + (n + r - a.n0)] += int32_t{a.x[t * a.ldx + k]} * wr[r][k];
    n += 4 * quads;
  }
  if (n < a.n1) {
    GemmS8Args rest = a;
    rest.n0 = n;
    rest.out = a.out + (n - a.n0);
    gemm_s8_tokens<VnniDot>(rest, t_begin, t_end);
  }
}

// gemm_u4 for batches: w + 8 in [0, 15] is already vpdpbusd's unsigned operand and x in
// [-7, 7] its signed one, so no flip: a block of two rows (16 packed bytes each) is unpacked
// into one zmm [a elements 0-15 | a 16-31 | b 0-15 | b 16-31] against the token's 32 bytes
// broadcast to both halves. A tile is 8 rows (4 pairs) x 4 tokens.
inline __m512i u4_two_rows(__m256i v, __m256i mask, __m512i order) {
  const __m256i lo = _mm256_and_si256(v, mask), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), mask);
  return _mm512_permutex2var_epi64(_mm512_castsi256_si512(lo), order, _mm512_castsi256_si512(hi));
}

// Pair p's block b: 32 bytes at w[p] + b * 32 when paired (pack_rows2_u4), else 16 at w[p]
// and 16 at w1[p], advancing 16 per block.
template <bool Paired, int P, int T>
void tile_u4(const int8_t* x, int64_t ldx, const uint8_t* const* w0, const uint8_t* const* w1, int64_t nblk,
             int32_t* out, int64_t ld_out) {
  const __m256i mask = _mm256_set1_epi8(0x0F);
  const __m512i order = _mm512_set_epi64(11, 10, 3, 2, 9, 8, 1, 0);
  __m512i acc[T][P];
  for (auto& a : acc)
    for (auto& v : a) v = _mm512_setzero_si512();
  for (int64_t b = 0; b < nblk; ++b) {
    __m512i w[P];
    for (int p = 0; p < P; ++p) {
      const __m256i v =
          Paired ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w0[p] + b * 32))
                 : _mm256_set_m128i(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w1[p] + b * 16)),
                                    _mm_loadu_si128(reinterpret_cast<const __m128i*>(w0[p] + b * 16)));
      w[p] = u4_two_rows(v, mask, order);
    }
    for (int t = 0; t < T; ++t) {
      const __m512i xb = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + t * ldx + b * 32)));
      for (int p = 0; p < P; ++p) acc[t][p] = _mm512_dpbusd_epi32(acc[t][p], w[p], xb);
    }
  }
  for (int t = 0; t < T; ++t)
    for (int p = 0; p < P; ++p) {
      out[t * ld_out + 2 * p] = hsum_epi32(_mm512_castsi512_si256(acc[t][p]));
      out[t * ld_out + 2 * p + 1] = hsum_epi32(_mm512_extracti64x4_epi64(acc[t][p], 1));
    }
}

using TileU4Fn = void (*)(const int8_t*, int64_t, const uint8_t* const*, const uint8_t* const*, int64_t, int32_t*, int64_t);
template <bool Paired, int P>
constexpr TileU4Fn kTilesU4[kTileTokens + 1] = {nullptr, tile_u4<Paired, P, 1>, tile_u4<Paired, P, 2>,
                                                tile_u4<Paired, P, 3>, tile_u4<Paired, P, 4>};

void gemm_u4_batch(const GemmS8Args& a, int64_t t_begin, int64_t t_end) {
  const auto* wb = reinterpret_cast<const uint8_t*>(a.w);
  const int64_t nblk = a.k / 32, nt = t_end - t_begin;
  int64_t n = a.n0;
  // Rows in groups of 8 (4 pairs, all paired or all plain), else 2.
  while (n + 2 <= a.n1) {
    const bool paired = n < a.rows2;
    const int pairs = n + 8 <= a.n1 && (!paired || n + 8 <= a.rows2) ? 4 : 1;
    const uint8_t *w0[4], *w1[4];
    for (int p = 0; p < pairs; ++p) {
      w0[p] = wb + (n + 2 * p) * a.ldw;
      w1[p] = paired ? w0[p] + 16 : w0[p] + a.ldw;
    }
    const TileU4Fn* tiles = paired ? (pairs == 4 ? kTilesU4<true, 4> : kTilesU4<true, 1>)
                                   : (pairs == 4 ? kTilesU4<false, 4> : kTilesU4<false, 1>);
    int32_t* o = a.out + t_begin * a.ld_out + (n - a.n0);
    for (int64_t t = 0; t < nt; t += kTileTokens) {
      const int64_t m = std::min<int64_t>(kTileTokens, nt - t);
      tiles[m](a.x + (t_begin + t) * a.ldx, a.ldx, w0, w1, nblk, o + t * a.ld_out, a.ld_out);
    }
    n += 2 * pairs;
  }
  if (n < a.n1) {  // an odd last row
    GemmS8Args rest = a;
    rest.n0 = n;
    rest.out = a.out + (n - a.n0);
    rest.x = a.x + t_begin * a.ldx;
    rest.n_tokens = nt;
    rest.out += t_begin * a.ld_out;
    quant_linear_avx2_table().gemm_u4(rest);
  }
}

}  // namespace

// Decoding stays on AVX2's gemm_u4 (it streams the packed rows at memory speed); batches of
// 4+ tokens take the 512-bit tiles.
void gemm_u4_avx512(const GemmS8Args& a) {
  if (a.n_tokens < 4) return quant_linear_avx2_table().gemm_u4(a);
  constexpr int64_t kTokenBlock = 48;
  for (int64_t t0 = 0; t0 < a.n_tokens; t0 += kTokenBlock) gemm_u4_batch(a, t0, std::min(a.n_tokens, t0 + kTokenBlock));
}

// One or two tokens (decoding) stream the weights through the 256-bit dot kernel; batches take
// the 512-bit tiles, in blocks of tokens whose activations fit L2 as gemm_s8_blocks does.
void gemm_s8_avx512(const GemmS8Args& a) {
  if (a.n_tokens < 4) return gemm_s8_blocks<VnniDot>(a);
  constexpr int64_t kTokenBlock = 48;
  for (int64_t t0 = 0; t0 < a.n_tokens; t0 += kTokenBlock) gemm_s8_batch(a, t0, std::min(a.n_tokens, t0 + kTokenBlock));
}

}  // namespace quanta::kernels
