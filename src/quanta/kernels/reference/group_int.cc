// Scalar group-wise integer kernels (the reference the AVX2 ones are tested
// against) and their dispatch.
#include "quanta/kernels/group_int.h"

#include <cmath>

#include "quanta/kernels/quant_dot.h"

namespace quanta::kernels {

void pack_group_int4(const uint8_t* codes, int64_t n, uint8_t* out) {
  for (int64_t b = 0; b < n / 32; ++b)
    for (int j = 0; j < 16; ++j)
      out[b * 16 + j] = static_cast<uint8_t>((codes[b * 32 + j] & 0xF) | (codes[b * 32 + j + 16] & 0xF) << 4);
}

int64_t group_int_act_block(int64_t group) {
  if (group <= 128) return group;
  for (int64_t b : {128, 64}) if (group % b == 0) return b;
  return 32;
}

void quantize_group_int_acts(const float* x, int64_t n, int64_t block, int16_t* q, float* d, float* dsum) {
  for (int64_t b = 0; b < n / block; ++b) {
    d[b] = quantize_16bit(x + b * block, static_cast<int>(block), q + b * block);
    int64_t sum = 0;
    for (int64_t i = 0; i < block; ++i) sum += q[b * block + i];
    dsum[b] = d[b] * static_cast<float>(sum);
  }
}

void split_group_int_acts(const int16_t* q, int64_t n, uint8_t* out) {
  for (int64_t c = 0; c < n / 128; ++c, q += 128, out += 256)
    for (int i = 0; i < 64; ++i) {
      const int lo = q[(i / 16) * 32 + i % 16], hi = q[(i / 16) * 32 + 16 + i % 16];
      out[i] = static_cast<uint8_t>(lo & 0xFF);
      out[64 + i] = static_cast<uint8_t>(hi & 0xFF);
      out[128 + i] = static_cast<uint8_t>((lo - (lo & 0xFF)) / 256);
      out[192 + i] = static_cast<uint8_t>((hi - (hi & 0xFF)) / 256);
    }
}

namespace {

void dot_ref(bool codes4, int64_t n, int64_t group, const uint8_t* q, const float* sm, const GroupIntActs& x,
             int n_tokens, float* out) {
  const int64_t n_blocks = n / x.block;
  for (int t = 0; t < n_tokens; ++t) {
    double acc = 0.0;
    for (int64_t b = 0; b < n_blocks; ++b) {
      const int64_t g = b * x.block / group;
      int64_t isum = 0;
      for (int64_t k = b * x.block; k < (b + 1) * x.block; ++k)
        isum += static_cast<int64_t>(group_int_code(codes4, q, k)) * x.q[t * n + k];
      acc += double{sm[2 * g]} * x.d[t * n_blocks + b] * static_cast<double>(isum) -
             double{sm[2 * g + 1]} * x.dsum[t * n_blocks + b];
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
  static const GroupIntKernels t{Isa::kScalar, dot_ref, dequant_ref, false, nullptr};
  return t;
}

const GroupIntKernels& group_int_kernels_for(Isa isa) {
  // AMX decodes as AVX-512 does and multiplies prompts in its tiles.
  static const GroupIntKernels amx{Isa::kAmx, group_int_avx512_table().dot, group_int_avx512_table().dequant,
                                   group_int_avx512_table().split_acts, nullptr};
  switch (isa) {
    case Isa::kScalar: return group_int_reference_table();
    case Isa::kAvx2: return group_int_avx2_table();
    case Isa::kAvx512: return group_int_avx512_table();
    default: return amx;
  }
}

const GroupIntKernels& group_int_kernels() { return group_int_kernels_for(active_isa()); }

}  // namespace quanta::kernels
