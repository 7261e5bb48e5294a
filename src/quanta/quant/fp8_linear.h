// The Linear kernel of FP8 E4M3 weights with float scales (compressed-tensors
// float-quantized: the FP8, FP8_DYNAMIC and FP8_BLOCK schemes).
//
//   W[n, k] = e4m3(w[n, k]) * s_w        s_w per output row, per tensor, or per [bn, bk] block
//   x_a[t, k] = e4m3(clamp(x / s_x, -448, 448)) * s_x   (round to nearest even)
//        s_x = max |x| / 448 per token or per token and act_group elements (dynamic), or the
//        checkpoint's input_scale (static); no activation quantization for weight-only FP8
//   y = x_a W^T + bias
//
// The weights stay E4M3 in the mapping; rows are decoded to f32 (one rounding: an
// E4M3 value times its scale) a cache-sized tile at a time and multiplied in f32
// (or on the AMX tiles), so the only error beyond the scheme's own rounding is
// f32 summation.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "quanta/core/tensor.h"
#include "quanta/quant/hf_quant_config.h"
#include "quanta/quant/quant_method.h"

namespace quanta::quant {

struct Fp8LinearWeights {
  Tensor weight;              // [n_out, n_in] F8_E4M3
  std::vector<float> scale;   // [n_out], or [ceil(n_out / block_n), ceil(n_in / block_k)] with blocks
  int64_t block_n = 0, block_k = 0;  // 0: one scale per output row
  Fp8Act act = Fp8Act::kNone;
  int64_t act_group = 0;      // Fp8Act::kGroup
  float input_scale = 1.0f;   // Fp8Act::kStatic
  std::vector<float> bias;    // [n_out] or empty
  std::string format;         // for inspect/logs
  // Row-parallel shards with per-token scales (Fp8Act::kToken): each token's max |x| over the
  // whole row (LinearSpec::reduce_max).
  std::function<void(float*, int64_t)> reduce_max;
};

std::unique_ptr<LinearKernel> make_fp8_linear(Fp8LinearWeights w);
// Spec's shard of a layer loaded whole (as shard_int_linear): rows at block_n boundaries, or input
// features at block_k and act_group boundaries; per-token scales over the whole row.
Fp8LinearWeights shard_fp8_linear(Fp8LinearWeights w, const LinearSpec& spec);

// x (n values) to their FP8 activation values x_a with scale s (exposed for tests).
void fp8_fake_quantize(const float* x, int64_t n, float s, float* out);

}  // namespace quanta::quant
