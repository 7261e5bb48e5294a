// Scalar group-wise integer kernels (the reference the AVX2 ones are tested
// against) and their dispatch.
#include "quanta/kernels/group_int.h"

#include <cmath>

namespace quanta::kernels {

void pack_group_int4(const uint8_t* codes, int64_t n, uint8_t* out) {
  for (int64_t b = 0; b < n / 32; ++b)
    for (int j = 0; j < 16; ++j)
      out[b * 16 + j] = static_cast<uint8_t>((codes[b * 32 + j] & 0xF) | (codes[b * 32 + j + 16] & 0xF) << 4);
}

namespace {

void dot_ref(bool codes4, int64_t n, int64_t group, const uint8_t* q, const float* sm, const BlockQ16* x,
             int64_t x_stride, int n_tokens, float* out) {
  for (int t = 0; t < n_tokens; ++t) {
    const BlockQ16* xt = x + t * x_stride;
    double acc = 0.0;
    for (int64_t b = 0; b < n / 32; ++b) {
      const int64_t g = b * 32 / group;
      int64_t isum = 0, xsum = 0;
      for (int i = 0; i < 32; ++i) {
        isum += static_cast<int64_t>(group_int_code(codes4, q, b * 32 + i)) * xt[b].qs[i];
        xsum += xt[b].qs[i];
      }
      acc += static_cast<double>(xt[b].d) * (static_cast<double>(sm[2 * g]) * static_cast<double>(isum) -
                                             static_cast<double>(sm[2 * g + 1]) * static_cast<double>(xsum));
    }
    out[t] = static_cast<float>(acc);
  }
}

void dequant_ref(bool codes4, const uint8_t* q, const float* sm, int64_t group, int64_t k0, int64_t len,
                 float* out) {
  for (int64_t k = k0; k < k0 + len; ++k) {
    const int64_t g = k / group;
    // One rounding, as the vector kernels' fused multiply-subtract.
    out[k - k0] = std::fma(sm[2 * g], static_cast<float>(group_int_code(codes4, q, k)), -sm[2 * g + 1]);
  }
}

}  // namespace

const GroupIntKernels& group_int_reference_table() {
  static const GroupIntKernels t{Isa::kScalar, dot_ref, dequant_ref};
  return t;
}

const GroupIntKernels& group_int_kernels_for(Isa isa) {
  // AVX-512 and AMX reuse the AVX2 kernels for decoding; the tier still decides
  // the prompt path (its f32 matmul, or the AMX tiles).
  static const GroupIntKernels avx512{Isa::kAvx512, group_int_avx2_table().dot, group_int_avx2_table().dequant};
  static const GroupIntKernels amx{Isa::kAmx, group_int_avx2_table().dot, group_int_avx2_table().dequant};
  switch (isa) {
    case Isa::kScalar: return group_int_reference_table();
    case Isa::kAvx2: return group_int_avx2_table();
    case Isa::kAvx512: return avx512;
    default: return amx;
  }
}

const GroupIntKernels& group_int_kernels() { return group_int_kernels_for(active_isa()); }

}  // namespace quanta::kernels
