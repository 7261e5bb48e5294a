// AVX-512 level of the float kernel table: the dot product and axpy of attention at
// 512 bits (masked tails, no scalar loop), and matmul_bf16_exact on vdpbf16ps (the MX
// prompt path); the other entries are the AVX2 kernels,
// which every AVX-512 CPU runs (the quantized paths have their own AVX-512 and AMX
// kernels: quant_dot_avx512.cc, quant_linear_avx512.cc, tile_gemm_amx.cc).
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "quanta/kernels/kernels.h"

namespace quanta::kernels {

namespace {

inline __mmask16 tail_mask(int64_t n) { return static_cast<__mmask16>((1u << n) - 1); }

float dot_f32_avx512(const float* a, const float* b, int64_t n) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), acc1);
  }
  for (; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : tail_mask(n - i);
    acc0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), acc0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

void axpy_f32_avx512(float alpha, const float* x, float* y, int64_t n) {
  const __m512 va = _mm512_set1_ps(alpha);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : tail_mask(n - i);
    _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
  }
}

// ---- matmul_bf16_exact ----
//
// x and w are converted to bf16 once per call (exact for the values this entry takes), rows
// padded with zeros to a multiple of 32, and a tile of R rows x T tokens multiplies 32 columns
// per vdpbf16ps (pairs of products added into 16 f32 lanes), the lanes summed at the end.

// n f32 values to bf16, zero-padded to n_padded (a multiple of 32).
void to_bf16(const float* p, int64_t n, int64_t n_padded, uint16_t* out) {
  for (int64_t k = 0; k < n_padded; k += 32) {
    const __m512 lo = _mm512_maskz_loadu_ps(n - k >= 16 ? __mmask16(0xFFFF) : n > k ? tail_mask(n - k) : 0, p + k);
    const __m512 hi =
        _mm512_maskz_loadu_ps(n - k >= 32 ? __mmask16(0xFFFF) : n > k + 16 ? tail_mask(n - k - 16) : 0, p + k + 16);
    _mm512_storeu_si512(out + k, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
  }
}

template <int R, int T>
void bf16_tile(const uint16_t* x, const uint16_t* w, int64_t kp, float* y, int64_t ldy) {
  __m512 acc[T][R];
  for (auto& a : acc)
    for (auto& v : a) v = _mm512_setzero_ps();
  for (int64_t k = 0; k < kp; k += 32) {
    __m512bh wv[R];
    for (int r = 0; r < R; ++r) wv[r] = (__m512bh)_mm512_loadu_si512(w + r * kp + k);
    for (int t = 0; t < T; ++t) {
      const __m512bh xv = (__m512bh)_mm512_loadu_si512(x + t * kp + k);
      for (int r = 0; r < R; ++r) acc[t][r] = _mm512_dpbf16_ps(acc[t][r], xv, wv[r]);
    }
  }
  for (int t = 0; t < T; ++t)
    for (int r = 0; r < R; ++r) y[t * ldy + r] = _mm512_reduce_add_ps(acc[t][r]);
}

using Bf16TileFn = void (*)(const uint16_t*, const uint16_t*, int64_t, float*, int64_t);
template <int R>
constexpr Bf16TileFn kBf16Tiles[5] = {nullptr, bf16_tile<R, 1>, bf16_tile<R, 2>, bf16_tile<R, 3>, bf16_tile<R, 4>};
constexpr const Bf16TileFn* kBf16TileRows[5] = {nullptr, kBf16Tiles<1>, kBf16Tiles<2>, kBf16Tiles<3>, kBf16Tiles<4>};

void matmul_bf16_exact_avx512(const MatmulArgs& a) {
  const int64_t K = a.n_in, kp = (K + 31) / 32 * 32, rows = a.o_end - a.o_begin;
  thread_local std::vector<uint16_t> xb, wb;
  xb.resize(static_cast<size_t>(a.n_tokens * kp));
  wb.resize(static_cast<size_t>(rows * kp));
  const float* w = static_cast<const float*>(a.w);
  for (int64_t t = 0; t < a.n_tokens; ++t) to_bf16(a.x + t * K, K, kp, xb.data() + t * kp);
  for (int64_t r = 0; r < rows; ++r) to_bf16(w + (a.o_begin + r) * K, K, kp, wb.data() + r * kp);
  for (int64_t r = 0; r < rows; r += 4) {
    const int64_t nr = std::min<int64_t>(4, rows - r);
    for (int64_t t = 0; t < a.n_tokens; t += 4)
      kBf16TileRows[nr][std::min<int64_t>(4, a.n_tokens - t)](xb.data() + t * kp, wb.data() + r * kp, kp,
                                                              a.y + t * a.ldy + a.o_begin + r, a.ldy);
  }
}

}  // namespace

const KernelTable& avx512_table() {
  static const KernelTable table = [] {
    KernelTable t = avx2_table();
    t.isa = Isa::kAvx512;
    t.dot_f32 = dot_f32_avx512;
    t.axpy_f32 = axpy_f32_avx512;
    t.matmul_bf16_exact = matmul_bf16_exact_avx512;
    return t;
  }();
  return table;
}

}  // namespace quanta::kernels
