// OCP Microscaling (MX v1.0) block formats: MXFP8 (E4M3, E5M2) and MXFP4 (E2M1).
//
// A block is 32 consecutive elements along the reduction dimension sharing one
// E8M0 scale X = 2^(code - 127); element i decodes to X * P_i. Code 0xFF is NaN
// and makes every element of its block NaN.
//
// Encoding follows the OCP conversion rule (MX v1.0 sec. 6.3, as the
// microsoft/microxcaling reference implements it, see
// ../shared/specs/checkpoint-formats-1.md sec. 4.3):
//   shared_exp = floor(log2(max_i |V_i|)) - emax_elem   (emax: E4M3 8, E5M2 15, E2M1 2)
//   amax == 0 counts as the smallest f32 normal; shared_exp < -127 clamps to -127;
//   shared_exp > 127, or a NaN/Inf in the block, gives the NaN scale 0xFF.
//   P_i = V_i / X rounded to the element type, saturating at its max normal.
// Element rounding is to nearest, ties to even (torch's casts); the reference
// producers (microxcaling, msModelSlim's exporter) round exact ties away from
// zero instead. Only exact ties differ; checkpoints are read as stored either way.
//
// Non-goals: the producer-specific scale variants of spec sec. 4.4 (a loader
// never recomputes a stored scale).
#pragma once

#include <cstddef>
#include <cstdint>

namespace quanta {

enum class MxElem : uint8_t { kE4M3, kE5M2, kE2M1 };

inline constexpr int kMxBlock = 32;

// Largest unbiased exponent of the element type's normals (8, 15, 2).
int mx_emax(MxElem e);
// Largest finite element value (448, 57344, 6).
float mx_max_normal(MxElem e);
const char* mx_elem_name(MxElem e);

// Element code (one byte; E2M1 uses the low nibble) to f32.
float mx_elem_to_f32(MxElem e, uint8_t code);
// f32 to element code, to nearest even, saturating at +-max normal; NaN stays NaN
// for the FP8 types (E2M1 has no NaN: +0).
uint8_t mx_elem_from_f32(MxElem e, float v);

// The E8M0 scale code the OCP rule gives a block whose largest magnitude is amax.
uint8_t mx_scale_code(MxElem e, float amax);

// One block of n <= 32 values: the scale code and one element code per value
// (a whole byte each, also for E2M1; see mx_pack_e2m1).
uint8_t mx_quantize_block(MxElem e, const float* v, int n, uint8_t* codes);
// The f32 value of one element: elem * 2^(scale - 127), NaN for scale 0xFF.
float mx_decode(MxElem e, uint8_t code, uint8_t scale);

// A row of n values into ceil(n/32) blocks: codes[n] (one byte each) and
// scales[ceil(n/32)]. The last block may be shorter than 32.
void mx_quantize_row(MxElem e, const float* v, int64_t n, uint8_t* codes, uint8_t* scales);
// The values a quantized row decodes to (what an MX activation really is).
void mx_fake_quantize_row(MxElem e, const float* v, int64_t n, float* out);

// E2M1 codes, two per byte along the row: element 2c in the low nibble, 2c+1 in
// the high nibble (msModelSlim, compressed-tensors and gpt-oss all store it so).
// An odd n leaves the last high nibble 0.
void mx_pack_e2m1(const uint8_t* codes, int64_t n, uint8_t* packed);
void mx_unpack_e2m1(const uint8_t* packed, int64_t n, uint8_t* codes);

}  // namespace quanta
