#include "quanta/core/mx.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>

#include "quanta/core/dtype.h"

namespace quanta {

int mx_emax(MxElem e) {
  switch (e) {
    case MxElem::kE4M3: return 8;
    case MxElem::kE5M2: return 15;
    case MxElem::kE2M1: return 2;
  }
  return 0;
}

float mx_max_normal(MxElem e) {
  switch (e) {
    case MxElem::kE4M3: return 448.0f;
    case MxElem::kE5M2: return 57344.0f;
    case MxElem::kE2M1: return 6.0f;
  }
  return 0.0f;
}

const char* mx_elem_name(MxElem e) {
  switch (e) {
    case MxElem::kE4M3: return "e4m3";
    case MxElem::kE5M2: return "e5m2";
    case MxElem::kE2M1: return "e2m1";
  }
  return "?";
}

float mx_elem_to_f32(MxElem e, uint8_t code) {
  switch (e) {
    case MxElem::kE4M3: return e4m3fn_to_f32(code);
    case MxElem::kE5M2: return e5m2_to_f32(code);
    case MxElem::kE2M1: return e2m1_to_f32(code);
  }
  return 0.0f;
}

uint8_t mx_elem_from_f32(MxElem e, float v) {
  switch (e) {
    case MxElem::kE4M3: return f32_to_e4m3fn(v, Saturation::kSaturate);
    case MxElem::kE5M2: return f32_to_e5m2(v, Saturation::kSaturate);
    case MxElem::kE2M1: return f32_to_e2m1(v);
  }
  return 0;
}

uint8_t mx_scale_code(MxElem e, float amax) {
  if (!std::isfinite(amax)) return 0xFF;
  amax = std::fabs(amax);
  if (amax == 0.0f) amax = std::numeric_limits<float>::min();
  // floor(log2(amax)) exactly, from the f32 exponent (subnormals via frexp).
  int exp2 = 0;
  std::frexp(amax, &exp2);  // amax = m * 2^exp2 with m in [0.5, 1)
  int shared = (exp2 - 1) - mx_emax(e);
  if (shared > 127) return 0xFF;
  if (shared < -127) shared = -127;
  return static_cast<uint8_t>(shared + 127);
}

uint8_t mx_quantize_block(MxElem e, const float* v, int n, uint8_t* codes) {
  float amax = 0.0f;
  bool nan = false;
  for (int i = 0; i < n; ++i) {
    if (std::isnan(v[i])) nan = true;
    amax = std::max(amax, std::fabs(v[i]));
  }
  const uint8_t scale = nan ? uint8_t{0xFF} : mx_scale_code(e, amax);
  if (scale == 0xFF) {
    // Every element decodes to NaN through the scale; store zeros.
    for (int i = 0; i < n; ++i) codes[i] = 0;
    return scale;
  }
  const int shared = static_cast<int>(scale) - 127;
  // Dividing by a power of two is exact unless it lands below f32's normals;
  // then ldexp rounds once, to nearest even.
  for (int i = 0; i < n; ++i) codes[i] = mx_elem_from_f32(e, std::ldexp(v[i], -shared));
  return scale;
}

float mx_decode(MxElem e, uint8_t code, uint8_t scale) {
  if (scale == 0xFF) return std::numeric_limits<float>::quiet_NaN();
  return std::ldexp(mx_elem_to_f32(e, code), static_cast<int>(scale) - 127);
}

void mx_quantize_row(MxElem e, const float* v, int64_t n, uint8_t* codes, uint8_t* scales) {
  for (int64_t b = 0; b * kMxBlock < n; ++b) {
    const int len = static_cast<int>(std::min<int64_t>(kMxBlock, n - b * kMxBlock));
    scales[b] = mx_quantize_block(e, v + b * kMxBlock, len, codes + b * kMxBlock);
  }
}

void mx_fake_quantize_row(MxElem e, const float* v, int64_t n, float* out) {
  uint8_t codes[kMxBlock];
  for (int64_t b = 0; b * kMxBlock < n; ++b) {
    const int len = static_cast<int>(std::min<int64_t>(kMxBlock, n - b * kMxBlock));
    const uint8_t s = mx_quantize_block(e, v + b * kMxBlock, len, codes);
    for (int i = 0; i < len; ++i) out[b * kMxBlock + i] = mx_decode(e, codes[i], s);
  }
}

void mx_pack_e2m1(const uint8_t* codes, int64_t n, uint8_t* packed) {
  for (int64_t i = 0; i < n; i += 2) {
    const uint8_t lo = codes[i] & 0xF;
    const uint8_t hi = i + 1 < n ? (codes[i + 1] & 0xF) : 0;
    packed[i / 2] = static_cast<uint8_t>(lo | (hi << 4));
  }
}

void mx_unpack_e2m1(const uint8_t* packed, int64_t n, uint8_t* codes) {
  for (int64_t i = 0; i < n; ++i) codes[i] = (packed[i / 2] >> (4 * (i & 1))) & 0xF;
}

}  // namespace quanta
