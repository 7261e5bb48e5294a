// Activation quantization for the quantized dot products, and their dispatch.
// Plain C++: it is O(n) per token against the O(n * n_out) matmul it feeds.
#include <algorithm>
#include <cmath>
#include <iterator>

#include "quanta/kernels/quant_dot.h"

namespace quanta::kernels {

float quantize_16bit(const float* x, int n, int16_t* qs) {
  float amax = 0.0f;
  for (int i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  const float id = amax > 0.0f ? 32767.0f / amax : 0.0f;
  // Round to nearest even as nearbyint does, without its library call (the baseline
  // ISA has no rounding instruction): below 2^22 in magnitude, adding and taking
  // away 1.5 * 2^23 leaves the rounded value. It vectorizes.
  constexpr float kMagic = 12582912.0f;
  for (int i = 0; i < n; ++i) qs[i] = static_cast<int16_t>((x[i] * id + kMagic) - kMagic);
  return amax / 32767.0f;
}

namespace {

// d * (sum of qs[0..15]).
float scaled_sum16(float d, const int16_t* qs) {
  int32_t sum = 0;
  for (int i = 0; i < 16; ++i) sum += qs[i];
  return d * static_cast<float>(sum);
}

}  // namespace

void quantize_q16(const float* x, BlockQ16* out, int64_t n) {
  for (int64_t b = 0; b < n / 32; ++b) {
    BlockQ16& o = out[b];
    o.d = quantize_16bit(x + 32 * b, 32, o.qs);
    o.dsum[0] = scaled_sum16(o.d, o.qs);
    o.dsum[1] = scaled_sum16(o.d, o.qs + 16);
  }
}

void quantize_q16k(const float* x, BlockQ16K* out, int64_t n) {
  for (int64_t b = 0; b < n / 256; ++b) {
    BlockQ16K& o = out[b];
    o.d = quantize_16bit(x + 256 * b, 256, o.qs);
    for (int j = 0; j < 16; ++j) o.hsum[j] = scaled_sum16(o.d, o.qs + 16 * j);
  }
}

void quantize_q16x4(const float* x, BlockQ16x4* out, int64_t n) {
  for (int64_t u = 0; u < (n + 127) / 128; ++u) {
    int16_t qs[128] = {};
    const int len = static_cast<int>(std::min<int64_t>(128, n - 128 * u));
    BlockQ16x4& o = out[u];
    o.d = quantize_16bit(x + 128 * u, len, qs);
    std::fill(std::begin(o.neg_hi_sum), std::end(o.neg_hi_sum), 0);
    for (int i = 0; i < 128; ++i) {
      const int block = i / 32, half = i % 32 / 16, pos = 16 * block + i % 16;
      const int hi = qs[i] >> 8;  // arithmetic: qs = 256 hi + lo with 0 <= lo < 256
      o.hi[half][pos] = static_cast<int8_t>(hi);
      o.lo[half][pos] = static_cast<uint8_t>(qs[i] - 256 * hi);
      o.neg_hi_sum[pos / 4] -= hi;
    }
  }
}

void quantize_q16kx(const float* x, BlockQ16Kx* out, int64_t n) {
  for (int64_t b = 0; b < n / 256; ++b) {
    int16_t qs[256];
    BlockQ16Kx& o = out[b];
    o.d = quantize_16bit(x + 256 * b, 256, qs);
    int32_t sums[16] = {};
    for (int i = 0; i < 256; ++i) {
      const int t = i % 128, k = 2 * (i / 128) + t % 64 / 32, p = 32 * (t / 64) + t % 32;
      const int hi = qs[i] >> 8;  // arithmetic: qs = 256 hi + lo with 0 <= lo < 256
      o.hi[k][p] = static_cast<int8_t>(hi);
      o.lo[k][p] = static_cast<uint8_t>(qs[i] - 256 * hi);
      sums[i / 16] += qs[i];
    }
    for (int j = 0; j < 16; ++j) o.xsum[j] = o.d * static_cast<float>(sums[j]);
  }
}

int64_t quant_act_bytes(ActLayout layout, int64_t n) {
  switch (layout) {
    case ActLayout::kQ16K: return n / 256 * static_cast<int64_t>(sizeof(BlockQ16K));
    case ActLayout::kQ16Kx: return n / 256 * static_cast<int64_t>(sizeof(BlockQ16Kx));
    case ActLayout::kQ16x4: return (n + 127) / 128 * static_cast<int64_t>(sizeof(BlockQ16x4));
    case ActLayout::kQ16: break;
  }
  return n / 32 * static_cast<int64_t>(sizeof(BlockQ16));
}

void quantize_act(ActLayout layout, const float* x, int64_t n, void* out) {
  switch (layout) {
    case ActLayout::kQ16K: return quantize_q16k(x, static_cast<BlockQ16K*>(out), n);
    case ActLayout::kQ16Kx: return quantize_q16kx(x, static_cast<BlockQ16Kx*>(out), n);
    case ActLayout::kQ16x4: return quantize_q16x4(x, static_cast<BlockQ16x4*>(out), n);
    case ActLayout::kQ16: return quantize_q16(x, static_cast<BlockQ16*>(out), n);
  }
}

QuantDotKernel quant_dot_for(Isa isa, uint32_t ggml_type, int n_tokens) {
  if (isa == Isa::kScalar) return {};
  const bool super_block = (ggml_type >= 10 && ggml_type <= 14) || ggml_type == 23;  // Q2_K..Q6_K, IQ4_XS
  const ActLayout words = super_block ? ActLayout::kQ16K : ActLayout::kQ16;
  if (isa == Isa::kAvx2) return {quant_dot_avx2(ggml_type), words};
  // Q4_0, Q4_K, Q5_K and (one token) Q6_K multiply bytes; measured in bench_quant_dot.
  const bool bytes = ggml_type == 2 || ggml_type == 12 || ggml_type == 13 || (ggml_type == 14 && n_tokens == 1);
  if (!bytes) return {quant_dot_avx512(ggml_type, false), words};
  return {quant_dot_avx512(ggml_type, true), ggml_type == 2 ? ActLayout::kQ16x4 : ActLayout::kQ16Kx};
}

QuantDotKernel quant_dot(uint32_t ggml_type, int n_tokens) { return quant_dot_for(active_isa(), ggml_type, n_tokens); }

QuantDequantFn quant_dequant_for(Isa isa, uint32_t ggml_type) {
  if (isa == Isa::kScalar) return nullptr;
  return isa == Isa::kAvx2 ? quant_dequant_avx2(ggml_type) : quant_dequant_avx512(ggml_type);
}

QuantDequantFn quant_dequant(uint32_t ggml_type) { return quant_dequant_for(active_isa(), ggml_type); }

QuantGemmFn quant_gemm_for(Isa isa, uint32_t ggml_type) {
  return isa == Isa::kAvx512 || isa == Isa::kAmx ? quant_gemm_avx512(ggml_type) : nullptr;
}

QuantGemmFn quant_gemm(uint32_t ggml_type) { return quant_gemm_for(active_isa(), ggml_type); }

}  // namespace quanta::kernels
