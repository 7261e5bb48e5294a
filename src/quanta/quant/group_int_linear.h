// The Linear kernel of group-wise integer weights with zero points (W2/W3/W4/W8
// A16): what the AWQ, GPTQ, AutoRound and compressed-tensors pack-quantized
// loaders (hf_quant.h) produce after unpacking their own bit orders.
//
//   W[n, k] = scale[n, g(k)] * (q[n, k] - zero[n, g(k)]),  g(k) = g_idx[k] or k / group_size
//
// Act-order (a g_idx that is not k / group_size) is resolved once at load: the
// input dimension is permuted so that every group is contiguous, and each
// forward pass gathers the activations in that order (O(T * K) against the
// O(T * K * N) matmul), as exllama and vLLM do.
//
// Activations stay f32 for prompts (rows decoded to f32 tiles, f32 matmul or the
// AMX tiles) and are 16-bit blocks for decoding (kernels/group_int.h). Groups
// that are not whole 32-blocks are decoded to f32 at load instead. With int8
// activations (W4A8) the decoding blocks hold the int8 values themselves, so the
// integer sums are exact, and prompts multiply the exact values x_q * s_t in f32.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "quanta/kernels/group_int.h"
#include "quanta/quant/quant_method.h"

namespace quanta::quant {

struct GroupIntWeights {
  int64_t n_out = 0, n_in = 0;
  int bits = 4;                 // 2..8
  int64_t group_size = 0;       // elements per group along n_in (n_in: per channel)
  std::vector<uint8_t> q;       // [n_out, n_in] codes in [0, 2^bits), checkpoint order of k
  std::vector<float> scale;     // [n_out, n_groups]
  std::vector<int32_t> zero;    // [n_out, n_groups], the true zero point (offsets already removed)
  std::vector<int32_t> g_idx;   // [n_in] group of each input column, or empty (k / group_size)
  std::vector<float> bias;      // [n_out] or empty
  // Activations quantized per token to int8 as compressed-tensors does for W4A8
  // (s_t = max_k |x| / 127.5, x_q = round(x / s_t) in [-128, 127]); false: A16.
  bool act_int8 = false;
  std::string format;           // for inspect/logs, e.g. "gptq w4 g128"
};

// Validates g_idx (every group gets group_size columns, the last the rest) and
// repacks. Throws Error naming `tensor` (the layer's g_idx) when it is not a
// permutation of groups.
std::unique_ptr<LinearKernel> make_group_int_linear(GroupIntWeights w, const std::string& tensor,
                                                    const kernels::GroupIntKernels& kt = kernels::group_int_kernels());

// Dense f32 weights [n_out, n_in] (and bias [n_out] or empty) through the float kernels.
std::unique_ptr<LinearKernel> make_float_linear(Tensor weight, Tensor bias);

}  // namespace quanta::quant
