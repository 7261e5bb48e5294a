// AVX-512 tier of the quantized-Linear primitives: the int8 x int8 GEMM (decoding
// and small batches of W8A8 / W8A8_DYNAMIC) with VNNI's vpdpbusd, which multiplies
// unsigned by signed bytes and adds the quads into int32 in one instruction (AVX2
// needs vpmaddubsw + vpmaddwd + vpaddd), at 256 bits so the sign trick's
// vpsignb still applies (it has no 512-bit form), plus a prefetch 2 KB ahead on
// each of the four weight rows it streams. The other primitives are AVX2's.
#include <immintrin.h>

#include <algorithm>

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

}  // namespace

void gemm_s8_avx512(const GemmS8Args& a) { gemm_s8_blocks<VnniDot>(a); }

}  // namespace quanta::kernels
