// Dot products of ggml-quantized weight rows with quantized activations.
//
// Decoding streams every weight once per token, so the matmul runs at memory
// speed only if the arithmetic keeps up with 4- to 8-bit weights: the
// activations of a token are quantized once and each weight block meets them in
// integer multiply-adds, with one float multiply per 32 weights.
//
// llama.cpp quantizes activations to 8 bits (Q8_0, Q8_1, Q8_K: the weight
// type's "partner" format, checkpoint-formats-2.md §5.1/§5.6). quanta uses 16
// bits, in blocks of 32 with an f32 scale, for every weight type: on the
// default model (Gemma 3 270M Q4_K_M) 8-bit activations, even with one scale
// per 32, move the greedy continuation of fixed prompts away from transformers'
// after 3 to 15 tokens, while 12 bits and more keep all 32 tokens (the
// measurement is in the issue note of the GGUF work). The 16-bit products cost
// one more widening per 32 weights (vpmovsxbw + vpmaddwd instead of vpmaddubsw),
// which decoding, bound by memory bandwidth, mostly hides.
// Types are ggml type ids (format/ggml_types.h, GgmlType); a type with no
// kernel here is multiplied by dequantizing its rows instead.
#pragma once

#include <cstdint>

#include "quanta/kernels/kernels.h"

namespace quanta::kernels {

// 32 activations: x[i] ~ d * qs[i], d = max|x| / 32767.
struct BlockQ16 {
  float d;
  float dsum[2];  // d * (sum of qs[0..15]) and d * (sum of qs[16..31]), for weight offsets and minimums
  int16_t qs[32];
};

// 256 activations under one scale, for the K-quant kernels, which sum a
// whole super-block in int32 (ActLayout::kQ16K): x[i] ~ d * qs[i], d = max|x| /
// 32767 over the 256, and the sums of each 16 for the weights' minimums.
struct BlockQ16K {
  int16_t qs[256];
  float hsum[16];  // d * (sum of qs[16 j .. 16 j + 15])
  float d;
};

// 128 activations under one scale for the AVX-512 kernels that multiply 32-weight
// blocks as bytes (vpdpbusd, ActLayout::kQ16x4): x[i] ~ d * q[i], d = max|x| /
// 32767 over the 128, and q = 256 hi + lo split into a signed high and an unsigned
// low byte, each of which meets a weight code as vpdpbusd's other operand (the high
// byte an unsigned, offset code: the kernel takes the offset times neg_hi_sum away).
// Half h of block b's values (elements 32 b + 16 h .. 32 b + 16 h + 15) sit at bytes
// 16 b .. 16 b + 15 of hi[h] and lo[h]: 32-bit lane l of a register of them holds
// four values of block l / 4, and neg_hi_sum[l] is minus the sum of the lane's eight
// high bytes (both halves). A row's last unit is padded with q = 0.
struct BlockQ16x4 {
  int8_t hi[2][64];
  uint8_t lo[2][64];
  int32_t neg_hi_sum[16];
  float d;
};

// 256 activations under one scale, split into bytes as BlockQ16x4 (q = 256 hi +
// lo, hi signed, lo unsigned), for the AVX-512 Q4_K / Q5_K / Q6_K kernels (ActLayout::kQ16Kx),
// in the order of that block's nibbles: register k of hi/lo holds, at byte
// p, element 128 (k / 2) + 64 (p / 32) + 32 (k % 2) + p % 32, so that the low
// nibbles of 64 bytes of codes meet k = 0 and 2, the high nibbles k = 1 and 3.
struct BlockQ16Kx {
  int8_t hi[4][64];
  uint8_t lo[4][64];
  float xsum[16];  // d * (sum of q over elements 16 j .. 16 j + 15), for minimums and offsets
  float d;
};

// qs[i] = round(x[i] / d) for d = max|x| / 32767 over the n values; returns d.
float quantize_16bit(const float* x, int n, int16_t* qs);

// n elements of x (n a multiple of 32) into n / 32 blocks.
void quantize_q16(const float* x, BlockQ16* out, int64_t n);
// n elements of x (n a multiple of 256) into n / 256 blocks.
void quantize_q16k(const float* x, BlockQ16K* out, int64_t n);
// n elements of x (n a multiple of 32) into ceil(n / 128) units.
void quantize_q16x4(const float* x, BlockQ16x4* out, int64_t n);
// n elements of x (n a multiple of 256) into n / 256 blocks.
void quantize_q16kx(const float* x, BlockQ16Kx* out, int64_t n);

// How a kernel wants a token's activations: the block types above.
enum class ActLayout { kQ16, kQ16x4, kQ16K, kQ16Kx };

// Bytes of one token's n activations in a layout, and the quantization itself.
int64_t quant_act_bytes(ActLayout layout, int64_t n);
void quantize_act(ActLayout layout, const float* x, int64_t n, void* out);

// out[t] = sum_i w[i] * x_t[i] over n elements, for n_tokens tokens: w is
// n / block_size blocks of the weight type, token t's activations (quantize_act)
// start x_bytes * t bytes after xq. Each weight block is decoded once per four tokens.
using QuantDotFn = void (*)(int64_t n, const void* w, const void* xq, int64_t x_bytes, int n_tokens, float* out);

// A dot kernel and the layout its activations are quantized in (quantize_act).
struct QuantDotKernel {
  QuantDotFn fn = nullptr;
  ActLayout layout = ActLayout::kQ16;
};

// The kernel for a ggml type on `isa` with n_tokens tokens per call ({nullptr} if that
// ISA has none: the scalar level multiplies by dequantizing). Layouts: kQ16K for the
// K-quants and IQ4_XS (their kernels accumulate a super-block's integer products,
// sub-block scales included, and apply one float scale per 256 weights), else kQ16;
// on AVX-512 the byte kernels, kQ16x4 for Q4_0 and kQ16Kx for Q4_K, Q5_K, and Q6_K
// for one token (its 16-bit kernel shares more of the decoding across several).
QuantDotKernel quant_dot_for(Isa isa, uint32_t ggml_type, int n_tokens = 1);
// quant_dot_for(active_isa(), ...).
QuantDotKernel quant_dot(uint32_t ggml_type, int n_tokens = 1);

// n weights (n / block_size blocks) to f32 with the dot kernels' decoders: for
// the prompt path, which multiplies dequantized tiles. Equal to the reference
// dequantizer within a few ulp (the order of the scale products differs), so
// the reference stays the one for embeddings and tests.
using QuantDequantFn = void (*)(const void* w, float* out, int64_t n);
QuantDequantFn quant_dequant_for(Isa isa, uint32_t ggml_type);
QuantDequantFn quant_dequant(uint32_t ggml_type);

// Prompts, on tiers with an integer GEMM (AVX-512 VNNI; nullptr below):
// y[t * y_stride + r] = sum_i w_r[i] * x_t[i] for the `rows` rows (rows <=
// quant_gemm_rows) starting at w, row_bytes apart, and n_tokens tokens of
// activations quantized as kQ16 (quantize_act), x_bytes apart. The rows
// are decoded once per call into 16-bit codes that every token meets in exact
// integer sums per 16 or 32 weights.
using QuantGemmFn = void (*)(int64_t n, const void* w, int64_t row_bytes, int rows, const void* xq, int64_t x_bytes,
                             int64_t n_tokens, float* y, int64_t y_stride);
constexpr int quant_gemm_rows = 32;
QuantGemmFn quant_gemm_for(Isa isa, uint32_t ggml_type);
QuantGemmFn quant_gemm(uint32_t ggml_type);

// Provided by the AVX2 and AVX-512 translation units (the AMX tier uses the AVX-512 ones).
QuantDotFn quant_dot_avx2(uint32_t ggml_type);
QuantDequantFn quant_dequant_avx2(uint32_t ggml_type);
// `bytes`: the byte kernel of Q4_0, Q4_K, Q5_K or Q6_K, else the 16-bit one.
QuantDotFn quant_dot_avx512(uint32_t ggml_type, bool bytes);
QuantDequantFn quant_dequant_avx512(uint32_t ggml_type);
QuantGemmFn quant_gemm_avx512(uint32_t ggml_type);

}  // namespace quanta::kernels
