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
// The kernels multiply the codes with 16-bit activations (quant_dot.h says why
// 16 bits) under one scale per block of up to 128 elements inside a group
// (GroupIntActs): per block an exact integer sum, then one float multiply-add
// for the scales and one for the zero point through the block's sum.
#pragma once

#include <cstdint>

#include "quanta/kernels/kernels.h"

namespace quanta::kernels {

// A prompt's activations for `gemm`: token t's n values as int16, x ~ d * q, one
// scale per `block` elements (group_int_act_block), and d * (sum of the block's q)
// for the zero points.
struct GroupIntActs {
  int64_t block;
  const int16_t* q;    // [tokens, n]
  const float* d;      // [tokens, n / block]
  const float* dsum;   // [tokens, n / block]
  // For dot kernels with split_acts, when block is 128 and codes are 4-bit:
  // split_group_int_acts of q ([tokens, n / 128, 256] bytes), else nullptr.
  const uint8_t* split = nullptr;
};

// The activation block of `gemm` for weights of `group` (a multiple of 32): the
// whole group up to 128 elements, else the largest of 128, 64, 32 dividing it.
// 128 bounds the int32 sums: 128 products of 255 by 32767 stay below 2^31.
int64_t group_int_act_block(int64_t group);
// n values of one token into GroupIntActs' layout (n a multiple of block):
// q = round(x / d), d = max|x| / 32767 over each block.
void quantize_group_int_acts(const float* x, int64_t n, int64_t block, int16_t* q, float* d, float* dsum);

// One token's n 16-bit activations (n a multiple of 128) as bytes that meet the
// 4-bit container's nibbles in place: per 128 elements, 64 low bytes of the
// elements the low nibbles of 4 blocks hold (element 32 b + j at 16 b + j), 64
// low bytes of the high nibbles' (32 b + 16 + j), then the two sets' high bytes
// (signed): q = 256 * high + low, so u8 x s8 products (vpdpbusd) stay exact.
void split_group_int_acts(const int16_t* q, int64_t n, uint8_t* out);

struct GroupIntKernels {
  Isa isa;
  // out[t] = sum_k W[k] * x_t[k] over the n elements of one row, for tokens
  // [0, n_tokens) of x (n_tokens <= 16).
  void (*dot)(bool codes4, int64_t n, int64_t group, const uint8_t* q, const float* sm, const GroupIntActs& x,
              int n_tokens, float* out);
  // Elements [k0, k0 + len) of one row (k0 and len multiples of 32) to f32.
  void (*dequant)(bool codes4, const uint8_t* q, const float* sm, int64_t group, int64_t k0, int64_t len,
                  float* out);
  // The dot kernel reads GroupIntActs::split where it applies.
  bool split_acts;
  // Prompts: y[t * y_stride + r] = sum_k W[r, k] * x_t[k] for the `rows` rows
  // (rows <= group_int_gemm_rows) starting at q (row_bytes apart) and sm, and the
  // n_tokens tokens of x. nullptr: the tier multiplies decoded f32 tiles instead.
  void (*gemm)(bool codes4, int64_t n, int64_t group, const uint8_t* q, int64_t row_bytes, const float* sm,
               int rows, const GroupIntActs& x, int64_t n_tokens, float* y, int64_t y_stride);
};

// Rows one `gemm` call takes at most (one panel of decoded weights).
constexpr int group_int_gemm_rows = 32;

const GroupIntKernels& group_int_kernels_for(Isa isa);
// group_int_kernels_for(active_isa()).
const GroupIntKernels& group_int_kernels();

const GroupIntKernels& group_int_reference_table();
const GroupIntKernels& group_int_avx2_table();
const GroupIntKernels& group_int_avx512_table();

// Codes in [0, 15] of one row (n a multiple of 32) into the 4-bit container (n / 2 bytes).
void pack_group_int4(const uint8_t* codes, int64_t n, uint8_t* out);
// Code of element k of a row stored in either container.
inline int group_int_code(bool codes4, const uint8_t* q, int64_t k) {
  if (!codes4) return q[k];
  const uint8_t b = q[(k / 32) * 16 + k % 16];
  return (k % 32) < 16 ? b & 0xF : b >> 4;
}

}  // namespace quanta::kernels
