// Compute kernels and their run-time ISA dispatch.
//
// Every kernel exists as a plain scalar reference (kernels/reference/) and, where
// speed matters, as ISA-specific versions (kernels/x86/*_avx2.cc, *_avx512.cc),
// each built in its own translation unit with its own compiler flags. The table
// for the best ISA the CPU has is chosen once, at first use; QUANTA_ISA=scalar|avx2|avx512|amx
// forces a lower one (never a higher one than the CPU runs).
#pragma once

#include <cstdint>
#include <string>

namespace quanta::kernels {

// Tiers, each a superset of the one below: AVX2+FMA+F16C; AVX-512 F/BW/VL/DQ with
// VNNI and BF16; AMX (tile, int8, bf16) with the kernel's tile-data permission.
enum class Isa { kScalar = 0, kAvx2 = 1, kAvx512 = 2, kAmx = 3 };
const char* isa_name(Isa isa);

// What the CPU (and the OS, for the register state) offers, read with cpuid/xgetbv.
struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false, avx_vnni = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512_vnni = false, avx512_bf16 = false, avx512_fp16 = false;
  bool amx_tile = false, amx_int8 = false, amx_bf16 = false;
  bool amx_permitted = false;  // arch_prctl(ARCH_REQ_XCOMP_PERM) granted tile data
};
// Detected once; the first call asks Linux for AMX tile data where the CPU has it.
const CpuFeatures& cpu_features();
// "avx2 fma f16c ... amx_bf16", for --version and logs.
std::string cpu_features_string();

// The best ISA this CPU runs (ignores QUANTA_ISA).
Isa host_isa();
// The ISA in use: host_isa(), lowered by QUANTA_ISA if set. Throws quanta::Error
// for an unknown QUANTA_ISA value or one the CPU cannot run.
Isa active_isa();

// Matmul against a weight stored row-major as [n_out, n_in] (the layout of a
// PyTorch Linear weight): y[t, o] = sum_k x[t, k] * w[o, k] for o in [o_begin, o_end).
// x is [n_tokens, n_in] f32, y is [n_tokens, ldy] f32. The row range lets callers
// split the output over threads.
struct MatmulArgs {
  const float* x;
  int64_t n_tokens;
  int64_t n_in;
  const void* w;  // f32, bf16 or f16 elements depending on the function
  float* y;
  int64_t ldy;
  int64_t o_begin;
  int64_t o_end;
};
using MatmulFn = void (*)(const MatmulArgs&);

struct KernelTable {
  Isa isa;
  MatmulFn matmul_f32;
  MatmulFn matmul_bf16;
  MatmulFn matmul_f16;
  // f32 weights whose values, like the activations', are exact in bf16 (MX-decoded
  // weights against MX-rounded activations: at most 8 significant bits): exact products,
  // f32 sums. AVX-512 multiplies them as bf16 pairs (vdpbf16ps, which flushes denormal
  // inputs and results to zero); the other tiers are matmul_f32.
  MatmulFn matmul_bf16_exact;
  float (*dot_f32)(const float* a, const float* b, int64_t n);
  void (*axpy_f32)(float a, const float* x, float* y, int64_t n);  // y += a * x
  // Gated MLP activations: out[i] = act(gate[i]) * up[i] (out may be gate), with
  // act = SiLU x * sigmoid(x), or GELU's tanh form 0.5 x (1 + tanh(u)) computed as
  // x * sigmoid(2u) (the same function).
  void (*silu_mul)(const float* gate, const float* up, float* out, int64_t n);
  void (*gelu_tanh_mul)(const float* gate, const float* up, float* out, int64_t n);
};

// The table for `isa` (lower levels fill in what a level does not specialise).
const KernelTable& kernels_for(Isa isa);
// The table for active_isa().
const KernelTable& kernels();

// Tables each ISA translation unit provides.
const KernelTable& reference_table();
const KernelTable& avx2_table();
const KernelTable& avx512_table();

}  // namespace quanta::kernels
