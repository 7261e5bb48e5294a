// AMX tile GEMMs (tile_gemm.h): weights as A tiles read in place, packed
// activations as B tiles, 2 x 2 tiles of output (32 weight rows x 32 tokens)
// per pass over k in the eight tile registers: tmm0-3 accumulate, tmm4-5 hold
// two 16-row weight tiles, tmm6-7 two 16-token activation tiles.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "quanta/kernels/tile_gemm.h"

namespace quanta::kernels {

namespace {

constexpr int64_t kChunk = 64;  // bytes of k per tile row
constexpr int64_t kTileBytes = 16 * kChunk;

// The 64-byte configuration (palette 1): every tile 16 rows of 64 bytes.
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// GCC 12 declares _tile_loadconfig as reading 8 bytes, so it may drop the stores
// that fill the rest of the configuration; the asm operand is the whole struct.
void load_tile_config() {
  static const TileConfig cfg = [] {
    TileConfig c;
    for (int i = 0; i < 8; ++i) c.colsb[i] = kChunk, c.rows[i] = 16;
    return c;
  }();
  __asm__ volatile("ldtilecfg %0" : : "m"(cfg) : "memory");
}

// Rows r0..r15 of a 16 x 16 matrix of 32-bit elements, transposed in place.
inline void transpose16(__m512i r[16]) {
  __m512i t[16], u[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  // In each 128-bit lane L, u[4q + j] holds rows 4q..4q+3 of column 4L + j.
  for (int q = 0; q < 4; ++q) {
    u[4 * q + 0] = _mm512_unpacklo_epi64(t[4 * q], t[4 * q + 2]);
    u[4 * q + 1] = _mm512_unpackhi_epi64(t[4 * q], t[4 * q + 2]);
    u[4 * q + 2] = _mm512_unpacklo_epi64(t[4 * q + 1], t[4 * q + 3]);
    u[4 * q + 3] = _mm512_unpackhi_epi64(t[4 * q + 1], t[4 * q + 3]);
  }
  for (int j = 0; j < 4; ++j) {
    const __m512i x0 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0x44), x1 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0xEE);
    const __m512i y0 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0x44),
                  y1 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0xEE);
    r[j] = _mm512_shuffle_i32x4(x0, y0, 0x88);
    r[4 + j] = _mm512_shuffle_i32x4(x0, y0, 0xDD);
    r[8 + j] = _mm512_shuffle_i32x4(x1, y1, 0x88);
    r[12 + j] = _mm512_shuffle_i32x4(x1, y1, 0xDD);
  }
}

inline __mmask16 mask16(int64_t n) { return n >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << n) - 1); }

// Packs tokens [16 tb, 16 tb + 16) of rows whose 64-byte chunk kc is produced by
// load(t, kc) as 16 32-bit words (zero for t >= n_tokens).
template <class Load>
void pack_blocks(int64_t n_tokens, int64_t nk, int64_t tb0, int64_t tb1, uint8_t* packed, Load load) {
  for (int64_t tb = tb0; tb < tb1; ++tb)
    for (int64_t kc = 0; kc < nk; ++kc) {
      __m512i r[16];
      for (int i = 0; i < 16; ++i) {
        const int64_t t = 16 * tb + i;
        r[i] = t < n_tokens ? load(t, kc) : _mm512_setzero_si512();
      }
      transpose16(r);
      uint8_t* out = packed + (tb * nk + kc) * kTileBytes;
      for (int i = 0; i < 16; ++i) _mm512_storeu_si512(out + i * kChunk, r[i]);
    }
}

// Where one term's operands start: weight rows a0 (a1 = a0 + 16 rows) and
// token tiles b0, b1, each walked over nk chunks of k.
struct TermPtrs {
  const uint8_t *a0, *a1, *b0, *b1;
};

// The sum over terms of a pass over nk chunks of k for NA weight tiles x NB
// token tiles, added to the C tiles at c (tile i * 2 + j at c + (i * 2 + j) *
// 256 elements, rows = weight rows) unless `first`, and stored back there.
template <bool kBf16, int NA, int NB>
void micro(const TermPtrs* terms, int n_terms, int64_t lda, int64_t nk, bool first, int32_t* c) {
  if (first) {
    _tile_zero(0);
    if constexpr (NB > 1) _tile_zero(1);
    if constexpr (NA > 1) _tile_zero(2);
    if constexpr (NA > 1 && NB > 1) _tile_zero(3);
  } else {
    _tile_loadd(0, c, 64);
    if constexpr (NB > 1) _tile_loadd(1, c + 256, 64);
    if constexpr (NA > 1) _tile_loadd(2, c + 512, 64);
    if constexpr (NA > 1 && NB > 1) _tile_loadd(3, c + 768, 64);
  }
  // Terms inside the walk over k, so that consecutive terms with the same token
  // tiles (the callers order them so) load those from L2 once: with 3 terms, 4
  // token tiles per chunk instead of 6. Weight tiles come from L1.
  for (int64_t kc = 0; kc < nk; ++kc) {
    for (int q = 0; q < n_terms; ++q) {
      const TermPtrs& p = terms[q];
      if (q == 0 || p.b0 != terms[q - 1].b0) {
        _tile_loadd(6, p.b0 + kc * kTileBytes, kChunk);
        if constexpr (NB > 1) _tile_loadd(7, p.b1 + kc * kTileBytes, kChunk);
      }
      _tile_loadd(4, p.a0 + kc * kChunk, lda);
      if constexpr (kBf16) {
        _tile_dpbf16ps(0, 4, 6);
        if constexpr (NB > 1) _tile_dpbf16ps(1, 4, 7);
      } else {
        _tile_dpbssd(0, 4, 6);
        if constexpr (NB > 1) _tile_dpbssd(1, 4, 7);
      }
      if constexpr (NA > 1) {
        _tile_loadd(5, p.a1 + kc * kChunk, lda);
        if constexpr (kBf16) {
          _tile_dpbf16ps(2, 5, 6);
          if constexpr (NB > 1) _tile_dpbf16ps(3, 5, 7);
        } else {
          _tile_dpbssd(2, 5, 6);
          if constexpr (NB > 1) _tile_dpbssd(3, 5, 7);
        }
      }
    }
  }
  _tile_stored(0, c, 64);
  if constexpr (NB > 1) _tile_stored(1, c + 256, 64);
  if constexpr (NA > 1) _tile_stored(2, c + 512, 64);
  if constexpr (NA > 1 && NB > 1) _tile_stored(3, c + 768, 64);
}

template <bool kBf16>
void micro_any(int na, int nb, const TermPtrs* terms, int n_terms, int64_t lda, int64_t nk, bool first, int32_t* c) {
  if (na == 2 && nb == 2) micro<kBf16, 2, 2>(terms, n_terms, lda, nk, first, c);
  else if (na == 2) micro<kBf16, 2, 1>(terms, n_terms, lda, nk, first, c);
  else if (nb == 2) micro<kBf16, 1, 2>(terms, n_terms, lda, nk, first, c);
  else micro<kBf16, 1, 1>(terms, n_terms, lda, nk, first, c);
}

// Blocking. Each 2 x 2 tile step needs 4 KB of operands for 4 tile products, more
// than L2 can feed at the tiles' pace, so one operand must come from L1: per block
// of 32 weight rows, k is walked in blocks of kKBlock chunks whose weight rows
// (every part) are copied to a contiguous buffer that stays in L1 (the copy also
// pads short rows and blocks with zeros, and a contiguous buffer avoids the 4 KB
// set aliasing of rows 4 KB apart), and every pair of token tiles of the call
// runs against it, its C tiles kept in a buffer between k blocks. Tokens are
// walked in chunks whose packed activations (every part) stay in L2, so L2 feeds
// the other operand; weights are read from memory once per chunk.
constexpr int64_t kKBlockBytes = 32 * 1024;     // weight bytes of a k block (all parts)
constexpr int64_t kChunkBytes = 1536 * 1024;    // packed activation bytes of a token chunk

template <bool kBf16>
void gemm(const TileGemmArgs& a) {
  if (a.n1 <= a.n0 || a.n_tokens <= 0) return;
  load_tile_config();
  const int64_t kbytes = a.k * (kBf16 ? 2 : 1), nk = (kbytes + kChunk - 1) / kChunk;
  const int64_t ntb = (a.n_tokens + 15) / 16;
  const int n_terms = kBf16 ? a.n_terms : 1;
  const int n_wparts = n_terms == 3 ? 2 : 1;
  const int64_t x_part_bytes = tile_packed_bytes(a.n_tokens, a.k, kBf16 ? 2 : 1);
  const int64_t kb_chunks = std::max<int64_t>(1, kKBlockBytes / (32 * kChunk * n_wparts));
  const int64_t lda = kb_chunks * kChunk, part_bytes = 32 * lda;
  const int x_parts = kBf16 && n_terms > 1 ? 2 : 1;
  const int64_t tb_chunk = std::max<int64_t>(2, kChunkBytes / (nk * kTileBytes * x_parts) / 2 * 2);
  thread_local TileVector<uint8_t> wbuf;
  thread_local TileVector<int32_t> cbuf;
  wbuf.resize(static_cast<size_t>(n_wparts * part_bytes));
  cbuf.resize(static_cast<size_t>((std::min(ntb, tb_chunk) + 1) / 2 * 1024));
  for (int64_t tc = 0; tc < ntb; tc += tb_chunk)
  for (int64_t n = a.n0; n < a.n1; n += 32) {
    const int64_t rows = std::min<int64_t>(32, a.n1 - n);
    const int na = rows > 16 ? 2 : 1;
    const auto* w = static_cast<const uint8_t*>(a.w) + n * a.ldw;  // unused when decoding
    for (int64_t kb = 0; kb < nk; kb += kb_chunks) {
      const int64_t kn = std::min(kb_chunks, nk - kb);
      const int64_t off = kb * kChunk, bytes = std::min(kn * kChunk, kbytes - off);
      if (a.decode) {
        // 16 rows at a time decoded to f32 (a buffer that stays in L1), then rounded
        // or split into the parts.
        alignas(64) float tmp[16 * kKBlockBytes / 64];
        const int64_t k0 = off / 2, len = bytes / 2, width = kn * kChunk / 2;
        for (int64_t r0 = 0; r0 < 16 * na; r0 += 16) {
          const int64_t valid = std::clamp<int64_t>(rows - r0, 0, 16);
          if (valid > 0) a.decode(a.decode_ctx, n + r0, valid, k0, len, tmp);
          for (int64_t r = r0; r < r0 + 16; ++r) {
            auto* hi = reinterpret_cast<uint16_t*>(wbuf.data() + r * lda);
            auto* lo = n_wparts == 2 ? reinterpret_cast<uint16_t*>(wbuf.data() + part_bytes + r * lda) : nullptr;
            float* row = tmp + (r - r0) * len;
            if (r - r0 < valid) {
              tile_f32_to_bf16(row, hi, lo, len);
              if (width > len) {  // k ends inside this block: zero columns
                std::fill_n(hi + len, width - len, uint16_t{0});
                if (lo) std::fill_n(lo + len, width - len, uint16_t{0});
              }
            } else {
              std::fill_n(hi, width, uint16_t{0});
              if (lo) std::fill_n(lo, width, uint16_t{0});
            }
          }
        }
      } else {
        for (int p = 0; p < n_wparts; ++p)
          for (int64_t r = 0; r < 16 * na; ++r) {
            uint8_t* dst = wbuf.data() + p * part_bytes + r * lda;
            if (r < rows) {
              std::memcpy(dst, w + p * a.w_part_bytes + r * a.ldw + off, static_cast<size_t>(bytes));
              std::memset(dst + bytes, 0, static_cast<size_t>(kn * kChunk - bytes));
            } else {
              std::memset(dst, 0, static_cast<size_t>(kn * kChunk));
            }
          }
      }
      const bool first = kb == 0, last = kb + kn == nk;
      for (int64_t tb = tc; tb < std::min(ntb, tc + tb_chunk); tb += 2) {
        const int nb = tb + 1 < ntb ? 2 : 1;
        TermPtrs terms[3];
        for (int q = 0; q < n_terms; ++q) {
          const TileTerm t = kBf16 ? a.terms[q] : TileTerm{0, 0};
          const uint8_t* wp = wbuf.data() + t.w * part_bytes;
          const uint8_t* b = a.x + t.x * x_part_bytes + (tb * nk + kb) * kTileBytes;
          terms[q] = {wp, wp + 16 * lda, b, b + nk * kTileBytes};
        }
        int32_t* c = cbuf.data() + (tb - tc) / 2 * 1024;
        micro_any<kBf16>(na, nb, terms, n_terms, lda, kn, first, c);
        if (!last) continue;
        for (int i = 0; i < na; ++i) {
          const int64_t col = n - a.n0 + 16 * i;
          const __mmask16 m = mask16(a.n1 - (n + 16 * i));
          for (int j = 0; j < nb; ++j) {
            __m512i r[16];
            const int32_t* ct = c + (i * 2 + j) * 256;
            for (int q = 0; q < 16; ++q) r[q] = _mm512_loadu_si512(ct + 16 * q);
            transpose16(r);  // rows are tokens now
            for (int q = 0; q < 16; ++q) {
              const int64_t t = 16 * (tb + j) + q;
              if (t >= a.n_tokens) break;
              _mm512_mask_storeu_epi32(static_cast<int32_t*>(a.out) + t * a.ld_out + col, m, r[q]);
            }
          }
        }
      }
    }
  }
}

}  // namespace

int64_t tile_packed_bytes(int64_t n_tokens, int64_t k, int elem_bytes) {
  return (n_tokens + 15) / 16 * ((k * elem_bytes + kChunk - 1) / kChunk) * kTileBytes;
}

void tile_pack_bf16(const float* x, int64_t ldx, int64_t n_tokens, int64_t k, bool split, int64_t tb0, int64_t tb1,
                    uint8_t* packed) {
  const int64_t nk = (2 * k + kChunk - 1) / kChunk;
  auto chunk = [&](int64_t t, int64_t kc, __m512& lo, __m512& hi) {
    const float* row = x + t * ldx + 32 * kc;
    const int64_t left = k - 32 * kc;
    lo = _mm512_maskz_loadu_ps(mask16(left), row);
    hi = _mm512_maskz_loadu_ps(mask16(std::max<int64_t>(0, left - 16)), row + 16);
  };
  pack_blocks(n_tokens, nk, tb0, tb1, packed, [&](int64_t t, int64_t kc) {
    __m512 lo, hi;
    chunk(t, kc, lo, hi);
    return reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo));
  });
  if (!split) return;
  // The remainders v - bf16(v), rounded to bf16.
  auto rest = [](__m512 v) {
    const __m256i h = reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(v));
    const __m512 back = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    return _mm512_sub_ps(v, back);
  };
  pack_blocks(n_tokens, nk, tb0, tb1, packed + tile_packed_bytes(n_tokens, k, 2), [&](int64_t t, int64_t kc) {
    __m512 lo, hi;
    chunk(t, kc, lo, hi);
    return reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(rest(hi), rest(lo)));
  });
}

void tile_pack_s8(const int8_t* x, int64_t ldx, int64_t n_tokens, int64_t k, int64_t tb0, int64_t tb1,
                  uint8_t* packed) {
  const int64_t nk = (k + kChunk - 1) / kChunk;
  pack_blocks(n_tokens, nk, tb0, tb1, packed, [&](int64_t t, int64_t kc) {
    const int64_t left = k - 64 * kc;
    const __mmask64 m = left >= 64 ? ~__mmask64(0) : (__mmask64(1) << left) - 1;
    return _mm512_maskz_loadu_epi8(m, x + t * ldx + 64 * kc);
  });
}

void tile_gemm_bf16(const TileGemmArgs& a) { gemm<true>(a); }
void tile_gemm_s8(const TileGemmArgs& a) { gemm<false>(a); }

void tile_f32_to_bf16(const float* x, uint16_t* hi, uint16_t* lo, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = mask16(n - i);
    const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
    const __m256i h = reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(v));
    _mm256_mask_storeu_epi16(hi + i, m, h);
    if (lo) {
      const __m512 back = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
      _mm256_mask_storeu_epi16(lo + i, m, reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(_mm512_sub_ps(v, back))));
    }
  }
}

}  // namespace quanta::kernels
