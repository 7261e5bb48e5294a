// Scalar references of the quantized-Linear primitives (kernels/quant_linear.h):
// the formulas written out as plainly as possible, also the fallback on CPUs
// without AVX2.
#include <cmath>
#include <cstring>

#include "quanta/core/dtype.h"
#include "quanta/kernels/quant_linear.h"

namespace quanta::kernels {

const int8_t kE2m1Times2[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

namespace {

void gemm_s8_ref(const GemmS8Args& a) {
  for (int64_t t = 0; t < a.n_tokens; ++t)
    for (int64_t n = a.n0; n < a.n1; ++n) {
      int32_t acc = 0;
      for (int64_t k = 0; k < a.k; ++k)
        acc += int32_t{a.x[t * a.ldx + k]} *
               int32_t{a.rows4 > 0 ? rows4_at(a.w, a.rows4, a.ldw, n, k) : a.w[n * a.ldw + k]};
      a.out[t * a.ld_out + (n - a.n0)] = acc;
    }
}

void gemm_u4_ref(const GemmS8Args& a) {
  const auto* w = reinterpret_cast<const uint8_t*>(a.w);
  // Element (n, k): its byte, in a matrix of ldw bytes (2 * ldw columns) per row.
  auto at = [&](int64_t n, int64_t k) {
    const uint8_t b = w[rows2_u4_byte(a.rows2, 2 * a.ldw, n, k)];
    return (k % 32) < 16 ? (b & 0xF) : (b >> 4);
  };
  for (int64_t t = 0; t < a.n_tokens; ++t)
    for (int64_t n = a.n0; n < a.n1; ++n) {
      int32_t acc = 0;
      for (int64_t k = 0; k < a.k; ++k) acc += int32_t{a.x[t * a.ldx + k]} * at(n, k);
      a.out[t * a.ld_out + (n - a.n0)] = acc;
    }
}

void gemm_f32_s8_ref(const GemmF32S8Args& a) {
  for (int64_t t = 0; t < a.n_tokens; ++t)
    for (int64_t n = a.n0; n < a.n1; ++n) {
      double acc = 0;
      for (int64_t k = 0; k < a.k; ++k) acc += double{a.x[t * a.ldx + k]} * a.w[n * a.ldw + k];
      a.out[t * a.ld_out + (n - a.n0)] = static_cast<float>(acc);
    }
}

float e4m3_weight(const GemmMxArgs& a, int64_t n, int64_t k) { return e4m3fn_to_f32(a.w[n * a.n_in + k]); }
float e2m1_weight(const GemmMxArgs& a, int64_t n, int64_t k) {
  const uint8_t b = a.w[n * (a.n_in / 2) + k / 2];
  return e2m1_to_f32(static_cast<uint8_t>((k & 1) ? b >> 4 : b & 0xF));
}

template <float (*Weight)(const GemmMxArgs&, int64_t, int64_t)>
void gemm_f32_mx_ref(const GemmMxArgs& a) {
  const int64_t nb = a.n_in / 32;
  for (int64_t t = 0; t < a.n_tokens; ++t)
    for (int64_t n = a.n0; n < a.n1; ++n) {
      double acc = 0;
      for (int64_t b = 0; b < nb; ++b) {
        double blk = 0;
        for (int64_t k = b * 32; k < b * 32 + 32; ++k) blk += double{a.x[t * a.n_in + k]} * Weight(a, n, k);
        acc += blk * e8m0_to_f32(a.w_scales[n * nb + b]);
      }
      a.y[t * a.ldy + n] = static_cast<float>(acc);
    }
}

void gemm_mxfp4_mxfp4_ref(const GemmMxArgs& a) {
  const int64_t nb = a.n_in / 32;
  for (int64_t t = 0; t < a.n_tokens; ++t)
    for (int64_t n = a.n0; n < a.n1; ++n) {
      double acc = 0;
      for (int64_t b = 0; b < nb; ++b) {
        int32_t blk = 0;  // sum of (2 x)(2 w): exact
        for (int64_t k = b * 32; k < b * 32 + 32; ++k)
          blk += a.x_e2m1[t * a.n_in + k] * int32_t{kE2m1Times2[(k & 1) ? a.w[n * (a.n_in / 2) + k / 2] >> 4
                                                                         : a.w[n * (a.n_in / 2) + k / 2] & 0xF]};
        acc += std::ldexp(static_cast<double>(blk),
                          int{a.x_scales[t * nb + b]} + int{a.w_scales[n * nb + b]} - 254 - 2);
      }
      a.y[t * a.ldy + n] = static_cast<float>(acc);
    }
}

}  // namespace

int64_t pack_rows4(const int8_t* w, int64_t n, int64_t k, int8_t* out) {
  const int64_t rows4 = n / 4 * 4;
  for (int64_t g = 0; g < rows4; g += 4)
    for (int64_t c = 0; c < k; c += 32)
      for (int64_t r = 0; r < 4; ++r) std::memcpy(out + g * k + c * 4 + r * 32, w + (g + r) * k + c, 32);
  std::memcpy(out + rows4 * k, w + rows4 * k, static_cast<size_t>((n - rows4) * k));
  return rows4;
}

int64_t pack_rows2_u4(const uint8_t* w, int64_t n, int64_t k, uint8_t* out) {
  const int64_t rows2 = n / 2 * 2, ldw = k / 2;
  for (int64_t g = 0; g < rows2; g += 2)
    for (int64_t c = 0; c < k; c += 32)
      for (int64_t r = 0; r < 2; ++r) std::memcpy(out + g * ldw + c + r * 16, w + (g + r) * ldw + c / 2, 16);
  std::memcpy(out + rows2 * ldw, w + rows2 * ldw, static_cast<size_t>((n - rows2) * ldw));
  return rows2;
}

void pack_u4(const int8_t* w, int64_t n, uint8_t* out) {
  for (int64_t b = 0; b < n / 32; ++b)
    for (int j = 0; j < 16; ++j)
      out[b * 16 + j] = static_cast<uint8_t>((w[b * 32 + j] + 8) | ((w[b * 32 + 16 + j] + 8) << 4));
}

void dequant_mx_row_ref(bool e4m3, const uint8_t* row, const uint8_t* scales, int64_t k0, int64_t len, float* out) {
  for (int64_t k = k0; k < k0 + len; ++k) {
    const float v = e4m3 ? e4m3fn_to_f32(row[k]) : e2m1_to_f32(static_cast<uint8_t>(row[k / 2] >> (4 * (k & 1))));
    out[k - k0] = v * e8m0_to_f32(scales[k / 32]);
  }
}

const QuantLinearKernels& quant_linear_reference_table() {
  static const QuantLinearKernels table{Isa::kScalar, gemm_s8_ref, gemm_u4_ref, gemm_f32_s8_ref, gemm_f32_mx_ref<e4m3_weight>,
                                        gemm_f32_mx_ref<e2m1_weight>, gemm_mxfp4_mxfp4_ref, dequant_mx_row_ref};
  return table;
}

const QuantLinearKernels& quant_linear_kernels_for(Isa isa) {
  // The AVX-512 and AMX tiers run the AVX2 primitives but gemm_s8 and gemm_u4 (VNNI); their
  // isa tells a layer that tiles (tile_gemm.h) may take its large batches.
  auto with_isa = [](Isa tier) {
    QuantLinearKernels t = quant_linear_avx2_table();
    t.isa = tier;
    t.gemm_s8 = gemm_s8_avx512;
    t.gemm_u4 = gemm_u4_avx512;
    return t;
  };
  static const QuantLinearKernels avx512 = with_isa(Isa::kAvx512), amx = with_isa(Isa::kAmx);
  switch (isa) {
    case Isa::kScalar: return quant_linear_reference_table();
    case Isa::kAvx2: return quant_linear_avx2_table();
    case Isa::kAvx512: return avx512;
    case Isa::kAmx: return amx;
  }
  return quant_linear_reference_table();
}

const QuantLinearKernels& quant_linear_kernels() {
  static const QuantLinearKernels& table = quant_linear_kernels_for(active_isa());
  return table;
}

}  // namespace quanta::kernels
