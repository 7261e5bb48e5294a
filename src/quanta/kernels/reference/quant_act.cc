// Activation quantization for the quantized dot products, and their dispatch.
// Plain C++: it is O(n) per token against the O(n * n_out) matmul it feeds.
#include <algorithm>
#include <cmath>

#include "quanta/kernels/quant_dot.h"

namespace quanta::kernels {

void quantize_q16(const float* x, BlockQ16* out, int64_t n) {
  for (int64_t b = 0; b < n / 32; ++b) {
    const float* xb = x + 32 * b;
    BlockQ16& o = out[b];
    float amax = 0.0f;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(xb[i]));
    o.d = amax / 32767.0f;
    const float id = amax > 0.0f ? 32767.0f / amax : 0.0f;
    int32_t sum[2] = {0, 0};
    for (int i = 0; i < 32; ++i) {
      o.qs[i] = static_cast<int16_t>(std::nearbyint(xb[i] * id));
      sum[i / 16] += o.qs[i];
    }
    o.dsum[0] = o.d * static_cast<float>(sum[0]);
    o.dsum[1] = o.d * static_cast<float>(sum[1]);
  }
}

QuantDotFn quant_dot_for(Isa isa, uint32_t ggml_type) {
  if (isa == Isa::kScalar) return nullptr;
  return isa == Isa::kAvx2 ? quant_dot_avx2(ggml_type) : quant_dot_avx512(ggml_type);
}

QuantDotFn quant_dot(uint32_t ggml_type) { return quant_dot_for(active_isa(), ggml_type); }

QuantDequantFn quant_dequant_for(Isa isa, uint32_t ggml_type) {
  if (isa == Isa::kScalar) return nullptr;
  return isa == Isa::kAvx2 ? quant_dequant_avx2(ggml_type) : quant_dequant_avx512(ggml_type);
}

QuantDequantFn quant_dequant(uint32_t ggml_type) { return quant_dequant_for(active_isa(), ggml_type); }

}  // namespace quanta::kernels
