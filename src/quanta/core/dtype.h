// Element types of checkpoint tensors and exact conversions to and from f32.
//
// Every conversion from f32 rounds to nearest, ties to even (f32_to_e8m0 excepted,
// see there), and NaN stays NaN (quiet) where the format has one. Special values follow
// IEEE 754 for f16/bf16 and the OCP 8-bit floating point (OFP8) and OCP Microscaling
// (MX) v1.0 specifications for the 8-, 6- and 4-bit formats:
//   e4m3fn: no infinities; S.1111.111 is NaN; max finite 448.
//   e5m2:   IEEE-like, with infinities and NaNs; max finite 57344.
//   e8m0:   unsigned power of two 2^(code-127); code 0xFF is NaN; no zero, no sign.
//   e2m1:   4 bits, no infinities or NaNs; max finite 6.
// Narrow formats take a Saturation mode for values beyond their largest finite
// value: kSaturate clamps to +-max, +-Inf included (OCP "satfinite", what MX
// producers use); kNonSaturating gives the format's overflow value (Inf for e5m2,
// NaN for e4m3fn, as torch and ml_dtypes cast). NaN stays NaN in both modes.
// Tested in tests/unit/dtype_test.cc (ml_dtypes 0.6.0 goldens, 2^32 f32 sweeps).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace quanta {

enum class DType : uint8_t {
  kF64, kF32, kF16, kBF16,
  // e2m1 is stored two per byte, low nibble first (torch float4_e2m1fn_x2 layout).
  kF8E4M3, kF8E5M2, kE8M0, kF4E2M1,
  kI64, kI32, kI16, kI8, kU8, kBool,
};

// Bits per element (4 for kF4E2M1).
int dtype_bits(DType t);
// Name as safetensors writes it ("F32", "BF16", "F8_E4M3", ...; "F8_E8M0" for e8m0
// and "F4" for e2m1, as in safetensors 0.8).
std::string_view dtype_name(DType t);
// Inverse of dtype_name; nullopt for names quanta does not know.
std::optional<DType> dtype_from_name(std::string_view name);
// Bytes for n elements (rounded up for sub-byte types).
size_t dtype_bytes(DType t, size_t n);

enum class Saturation { kSaturate, kNonSaturating };

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
float bf16_to_f32(uint16_t b);
uint16_t f32_to_bf16(float f);

float e4m3fn_to_f32(uint8_t v);
uint8_t f32_to_e4m3fn(float f, Saturation sat = Saturation::kNonSaturating);
float e5m2_to_f32(uint8_t v);
uint8_t f32_to_e5m2(float f, Saturation sat = Saturation::kNonSaturating);
float e8m0_to_f32(uint8_t v);
// Nearest power of two on the linear scale, ties (1.5 * 2^k) up, as ml_dtypes
// casts; 0, negatives, Inf, NaN and values past 2^127 give NaN (0xFF). See dtype.cc.
uint8_t f32_to_e8m0(float f);
float e2m1_to_f32(uint8_t nibble);  // low 4 bits used
uint8_t f32_to_e2m1(float f);       // saturating: e2m1 has no Inf/NaN; NaN gives +0

// Bulk conversion of n elements of a floating or integer type to f32. Integers and
// f64 convert by value, to nearest; BOOL gives 1 for any nonzero byte. src needs
// no alignment.
void convert_to_f32(DType t, const void* src, float* dst, size_t n);
// Bulk conversion from f32 to a floating type (kF32, kF16, kBF16, kF8E4M3, kF8E5M2, kF4E2M1),
// non-saturating where the format has a choice. For kF4E2M1 an odd n leaves the last
// byte's high nibble 0. Other types throw Error.
void convert_from_f32(DType t, const float* src, void* dst, size_t n);

}  // namespace quanta
