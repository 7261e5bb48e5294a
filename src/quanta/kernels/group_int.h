// Group-wise integer weights with zero points: the one packed layout that AWQ,
// GPTQ, AutoRound and compressed-tensors pack-quantized checkpoints are repacked
// into at load (whatever their on-disk bit order), so one kernel family serves
// all of them.
//
//   W[n, k] = s[n, g] * (q[n, k] - z[n, g]),  g = k / group,  q unsigned in [0, 2^bits)
//
// A row holds its codes in one of two containers: 4 bits (weights of 2, 3 or 4
// bits; in each 32-element block byte j holds element j in its low nibble and
// element j + 16 in its high nibble, the ggml Q4_0 order) or 8 bits (5 to 8 bits,
// one byte each). Beside the codes, each row has n_groups pairs {s, s * z} in f32
// ("sm"), so the zero point costs one multiply per group and stays exact (s is
// an f16 or bf16 value times an integer below 256: exact in f32).
//
// Decoding multiplies the codes with 16-bit activation blocks (quant_dot.h says
// why 16 bits): per 32-block an exact integer sum, per group one float multiply
// for the scale and one for the zero point through the blocks' sums.
#pragma once

#include <cstdint>

#include "quanta/kernels/kernels.h"
#include "quanta/kernels/quant_dot.h"

namespace quanta::kernels {

struct GroupIntKernels {
  Isa isa;
  // out[t] = sum_k W[k] * x_t[k] over the n elements of one row (n and group
  // multiples of 32), for n_tokens tokens whose n / 32 activation blocks start at
  // x + t * x_stride. codes4: the 4-bit container, else the 8-bit one.
  void (*dot)(bool codes4, int64_t n, int64_t group, const uint8_t* q, const float* sm, const BlockQ16* x,
              int64_t x_stride, int n_tokens, float* out);
  // Elements [k0, k0 + len) of one row (k0 and len multiples of 32) to f32.
  void (*dequant)(bool codes4, const uint8_t* q, const float* sm, int64_t group, int64_t k0, int64_t len,
                  float* out);
};

const GroupIntKernels& group_int_kernels_for(Isa isa);
// group_int_kernels_for(active_isa()).
const GroupIntKernels& group_int_kernels();

const GroupIntKernels& group_int_reference_table();
const GroupIntKernels& group_int_avx2_table();

// Codes in [0, 15] of one row (n a multiple of 32) into the 4-bit container (n / 2 bytes).
void pack_group_int4(const uint8_t* codes, int64_t n, uint8_t* out);
// Code of element k of a row stored in either container.
inline int group_int_code(bool codes4, const uint8_t* q, int64_t k) {
  if (!codes4) return q[k];
  const uint8_t b = q[(k / 32) * 16 + k % 16];
  return (k % 32) < 16 ? b & 0xF : b >> 4;
}

}  // namespace quanta::kernels
