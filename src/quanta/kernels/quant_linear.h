// Kernels of the integer and MX Linear schemes (msModelSlim W8A8, W8A8_DYNAMIC,
// W4A4_DYNAMIC, W8A16, W8A8_MXFP8, W4A8_MXFP, W4A4_MXFP4 and the online
// w8a8_int8 / mxfp8 quantization).
//
// Weights are [n_out, n_in] row-major as stored in the checkpoint (row = output
// feature); the row range [n0, n1) lets callers split the output over threads.
// Each primitive computes the raw block products; the caller applies the scales
// that are not per-block (per token, per channel, per group). Every primitive has
// a scalar reference (kernels/reference/quant_linear.cc) and an AVX2 version
// (kernels/x86/quant_linear_avx2.cc); tests/unit/quant_linear_test.cc holds
// them together on every ISA the CPU runs.
#pragma once

#include <cstdint>

#include "quanta/kernels/kernels.h"

namespace quanta::kernels {

struct GemmS8Args {
  const int8_t* x;  // [n_tokens, ldx], values in [-127, 127] (the AVX2 sign trick needs it)
  int64_t ldx;
  int64_t n_tokens;
  const int8_t* w;  // [n_out, ldw], any int8
  int64_t ldw;
  int64_t k;        // elements of each row taken, from column 0
  int64_t n0, n1;
  int32_t* out;     // out[t * ld_out + (n - n0)] = sum_k x[t,k] * w[n,k], exact
  int64_t ld_out;
  // gemm_s8 only: rows [0, rows4) of w are laid out by pack_rows4 (then ldw == k,
  // k % 32 == 0 and n0 % 4 == 0); 0 means every row is stored plainly.
  int64_t rows4 = 0;
  // gemm_u4 only: rows [0, rows2) are pairs laid out by pack_rows2_u4 (n0 even).
  // w may point at a later 32-column block (a group) only if every row is paired.
  int64_t rows2 = 0;
};

struct GemmF32S8Args {
  const float* x;  // [n_tokens, ldx]
  int64_t ldx;
  int64_t n_tokens;
  const int8_t* w;  // [n_out, ldw]
  int64_t ldw;
  int64_t k;
  int64_t n0, n1;
  float* out;  // out[t * ld_out + (n - n0)] = sum_k x[t,k] * w[n,k]
  int64_t ld_out;
};

// MX weight rows: E4M3 codes [n_out, n_in] (one byte each) or E2M1 codes packed
// two per byte [n_out, n_in/2] (low nibble first), E8M0 scales [n_out, n_in/32].
// n_in is a multiple of 32.
struct GemmMxArgs {
  const float* x;        // [n_tokens, n_in] activations as f32 (already MX-rounded for A8)
  const int8_t* x_e2m1;  // for the A4 kernel: [n_tokens, n_in] activation E2M1 values times 2 (int8)
  const uint8_t* x_scales;  // for the A4 kernel: [n_tokens, n_in/32] E8M0
  int64_t n_tokens;
  int64_t n_in;
  const uint8_t* w;
  const uint8_t* w_scales;
  int64_t n0, n1;
  float* y;  // y[t * ldy + n], n in [n0, n1)
  int64_t ldy;
};

struct QuantLinearKernels {
  Isa isa;
  void (*gemm_s8)(const GemmS8Args&);
  // int4 weights packed by pack_u4 (w is bytes, ldw bytes per row, k a multiple of 32),
  // activations in [-7, 7]: out = sum_k x[t,k] * (w[n,k] + 8), exact; the caller
  // subtracts 8 * sum_k x[t,k].
  void (*gemm_u4)(const GemmS8Args&);
  void (*gemm_f32_s8)(const GemmF32S8Args&);
  // y = sum_blocks 2^(ws-127) * sum_k x[t,k] * e4m3(w[n,k])
  void (*gemm_f32_mxfp8)(const GemmMxArgs&);
  // y = sum_blocks 2^(ws-127) * sum_k x[t,k] * e2m1(w[n,k])
  void (*gemm_f32_mxfp4)(const GemmMxArgs&);
  // y = sum_blocks 2^(xs-127) 2^(ws-127) * sum_k e2m1(x[t,k]) * e2m1(w[n,k]), exact per block
  void (*gemm_mxfp4_mxfp4)(const GemmMxArgs&);
  // Elements [k0, k0 + len) (whole 32-blocks) of one MX weight row to f32, scales
  // applied (exact): row holds E4M3 codes, one byte each, when e4m3, else E2M1
  // codes two per byte (low nibble first); scales the row's E8M0 scales per 32.
  void (*dequant_mx_row)(bool e4m3, const uint8_t* row, const uint8_t* scales, int64_t k0, int64_t len, float* out);
};

const QuantLinearKernels& quant_linear_kernels_for(Isa isa);
// quant_linear_kernels_for(active_isa()).
const QuantLinearKernels& quant_linear_kernels();

const QuantLinearKernels& quant_linear_reference_table();
const QuantLinearKernels& quant_linear_avx2_table();
// The AVX-512 (VNNI) gemm_s8 and gemm_u4; the AVX-512 and AMX tables take them, the rest from AVX2.
void gemm_s8_avx512(const GemmS8Args& a);
// The AVX-512 (VNNI) gemm_u4 for batches (decoding runs AVX2's).
void gemm_u4_avx512(const GemmS8Args& a);

// int4 values in [-8, 7] of one row (n a multiple of 32) into n/2 bytes, offset by
// +8 to [0, 15]: in each 32-block, byte j holds element j in its low nibble and
// element j + 16 in its high nibble (unsigned, so the AVX2 kernel needs no sign
// extension and splits a block with one shift).
void pack_u4(const int8_t* w, int64_t n, uint8_t* out);

// Interleaves an int8 [n, k] matrix (k a multiple of 32) by groups of 4 rows:
// for each 32-column block, the 4 rows' 32 bytes follow one another, so a
// kernel walking 4 rows reads one sequential stream instead of 4. Measured on
// Zen 1 (one token, int8 dot products, 256 MB): 12.1 against 8.4 GB/s on one
// thread, 20.8 against 13.5 on two. The last n % 4 rows follow unchanged.
// Returns the rows in groups (n / 4 * 4), GemmS8Args::rows4.
int64_t pack_rows4(const int8_t* w, int64_t n, int64_t k, int8_t* out);
// Element (row, col) of a matrix with `rows4` rows packed by pack_rows4.
inline int8_t rows4_at(const int8_t* w, int64_t rows4, int64_t k, int64_t row, int64_t col) {
  if (row >= rows4) return w[row * k + col];
  return w[(row & ~int64_t{3}) * k + (col / 32) * 128 + (row & 3) * 32 + col % 32];
}

// Interleaves pack_u4 rows (ldw = k / 2 bytes each, k a multiple of 32) by pairs:
// for each 32-column block, row 2i's 16 bytes then row 2i+1's, so the kernel's
// 2-row loop reads one stream (see pack_rows4). An odd last row follows
// unchanged. Returns the rows in pairs (n / 2 * 2), GemmS8Args::rows2.
int64_t pack_rows2_u4(const uint8_t* w, int64_t n, int64_t k, uint8_t* out);
// Byte holding element col of row `row` (pack_u4 nibble layout) in such a matrix.
inline int64_t rows2_u4_byte(int64_t rows2, int64_t k, int64_t row, int64_t col) {
  const int64_t in_block = col % 16;  // elements j and j + 16 share byte j
  if (row >= rows2) return row * (k / 2) + (col / 32) * 16 + in_block;
  return (row & ~int64_t{1}) * (k / 2) + (col / 32) * 32 + (row & 1) * 16 + in_block;
}

// E2M1 code -> 2 * value as int8 ({0, 1, 2, 3, 4, 6, 8, 12}, negated for codes 8..15).
extern const int8_t kE2m1Times2[16];

}  // namespace quanta::kernels
