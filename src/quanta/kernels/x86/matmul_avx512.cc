// AVX-512 level of the float kernel table: the dot product and axpy of attention at
// 512 bits (masked tails, no scalar loop); the other entries are the AVX2 kernels,
// which every AVX-512 CPU runs (the quantized paths have their own AVX-512 and AMX
// kernels: quant_dot_avx512.cc, quant_linear_avx512.cc, tile_gemm_amx.cc).
#include <immintrin.h>

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

}  // namespace

const KernelTable& avx512_table() {
  static const KernelTable table = [] {
    KernelTable t = avx2_table();
    t.isa = Isa::kAvx512;
    t.dot_f32 = dot_f32_avx512;
    t.axpy_f32 = axpy_f32_avx512;
    return t;
  }();
  return table;
}

}  // namespace quanta::kernels
