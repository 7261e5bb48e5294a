// Linear kernels of the integer and MX schemes, shared by the msModelSlim
// method (checkpoint tensors) and online quantization (weights quantized at load).
//
// Math (checkpoint-formats-1.md sec. 1.5, 1.6):
//   dynamic int:  s_t = max_k |x[t,k]| / qmax (qmax 127 or 7), x_q = round(x / s_t)
//                 (ties to even), y = s_t * sum_g scale[n,g] * sum_{k in g} x_q W + bias
//                 (compressed-tensors: s_t = max_k |x| / 127.5, x_q clamped to [-128, 127])
//   static W8A8:  x_q = sat_int8(round(x / input_scale + input_offset)),
//                 y = (sum_k x_q W + quant_bias[n]) * deq_scale[n]   (bias already folded)
//   W8A16:        y = sum_g scale[n,g] * sum_{k in g} x W + bias
//   MX:           activations quantized per token in 32-blocks (OCP rule, core/mx.h),
//                 y = sum_b 2^(xs-127) 2^(ws-127) sum_{k in b} xa W + bias
// Integer block sums are exact (int32); scales are applied in f32.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "quanta/core/mx.h"
#include "quanta/core/tensor.h"
#include "quanta/kernels/quant_linear.h"
#include "quanta/quant/quant_method.h"
#include "quanta/quant/resolver.h"

namespace quanta::quant {

enum class IntAct { kNone, kDynamic8, kDynamic4, kStatic8 };

struct IntLinearWeights {
  Scheme scheme = Scheme::kW8A8Dynamic;
  Tensor weight;              // [n_out, n_in] int8 (int4 values one per byte for W4A4)
  std::vector<float> scale;   // [n_out, n_groups] (not for static W8A8)
  int64_t group_size = 0;     // elements per scale along n_in; n_in for per channel
  std::vector<float> bias;    // [n_out] or empty (dynamic, W8A16)
  // W8A8_DYNAMIC only: compressed-tensors' per-token rule, s_t = max_k |x| / 127.5 and
  // x_q in [-128, 127], instead of msModelSlim's max_k |x| / 127 and [-127, 127].
  bool act_full_range = false;
  // Row-parallel shards (LinearSpec::reduce_max): each token's max |x| over the whole row,
  // so dynamic activation scales are one process's.
  std::function<void(float*, int64_t)> reduce_max;
  // Static W8A8 only.
  float input_scale = 1.0f;
  float input_offset = 0.0f;
  std::vector<int32_t> quant_bias;  // [n_out]
  std::vector<float> deq_scale;     // [n_out]
};

struct MxLinearWeights {
  Scheme scheme = Scheme::kW8A8Mxfp8;
  Tensor weight;        // E4M3 [n_out, n_in] u8/f8, or E2M1 packed [n_out, n_in/2] u8
  Tensor scale;         // [n_out, n_in/32] u8 (E8M0)
  std::vector<float> bias;
};

// Under tensor parallelism, spec's shard of a layer loaded whole (LinearSpec::shard):
// rows, with their per-channel vectors, for a column-parallel layer; for a row-parallel one
// every row, the columns of its input features (whole scale groups or MX blocks), the bias
// and static W8A8's quant_bias on shard 0 only (the all-reduce adds them once), and
// spec.reduce_max, so that dynamic activation scales are the whole row's. The whole layer
// when spec asks for no split.
IntLinearWeights shard_int_linear(IntLinearWeights w, const LinearSpec& spec);
MxLinearWeights shard_mx_linear(MxLinearWeights w, const LinearSpec& spec);

// kt: the primitive table to run on (quant_linear_kernels() unless a test picks one).
std::unique_ptr<LinearKernel> make_int_linear(IntLinearWeights w,
                                              const kernels::QuantLinearKernels& kt = kernels::quant_linear_kernels());
std::unique_ptr<LinearKernel> make_mx_linear(MxLinearWeights w,
                                             const kernels::QuantLinearKernels& kt = kernels::quant_linear_kernels());

// Activation quantizers, exposed for tests and online quantization.
// max |x[k]| over the row (the dynamic scales' measure; NaNs are skipped).
float abs_max(const float* x, int64_t n);
// Per-token symmetric: returns s_t, writes x_q in [-qmax, qmax].
float quantize_row_symmetric(const float* x, int64_t n, int qmax, int8_t* q);
// The same with the row's max |x| given (amax >= every |x[k]|, e.g. over all shards of a row).
float quantize_row_with_max(const float* x, int64_t n, float amax, int qmax, int8_t* q);
// Static asymmetric int8 with saturation to [-128, 127].
void quantize_row_static(const float* x, int64_t n, float scale, float offset, int8_t* q);

}  // namespace quanta::quant
