// Element types and exact scalar conversions. Plain portable C++ (no intrinsics:
// this file is built without ISA flags). Every rounding to a 16-, 8- or 4-bit
// format is done on the bit pattern with integer arithmetic, never through float
// math; f64 and integers convert to f32 with the C++ conversion (IEEE, to nearest).
//
// Format facts:
//   f16:    IEEE 754-2019 binary16 (3.6): 1.5.10, bias 15.
//   bf16:   the top 16 bits of binary32: 1.8.7, bias 127.
//   e4m3fn: OCP OFP8 rev 1.0 (2023-12-01), encoding table: 1.4.3, bias 7, no
//           Inf, S.1111.111 is NaN, max 448, subnormals.
//   e5m2:   OCP OFP8 rev 1.0, encoding table: 1.5.2, bias 15, IEEE specials,
//           max 57344.
//   e8m0:   OCP MX v1.0 (sec. 5.4.1): 8 exponent bits, bias 127, 2^(code-127);
//           0xFF is NaN; no sign, zero, Inf or subnormals.
//   e2m1:   OCP MX v1.0 (sec. 5.3.3): 1.2.1, bias 1, subnormal 0.5, max 6, no
//           Inf/NaN.
// NaNs come out quiet. Saturating conversion is the OFP8 saturation mode as PTX
// cvt .satfinite and CUDA __NV_SATFINITE implement it: finite values beyond max
// and +-Inf clamp to +-max, NaN stays NaN.
#include "quanta/core/dtype.h"

#include <array>
#include <bit>
#include <cstring>
#include <string>

#include "quanta/core/error.h"

namespace quanta {

namespace {

constexpr uint32_t kF32Sign = 0x80000000u;
constexpr uint32_t kF32Abs = 0x7FFFFFFFu;
constexpr uint32_t kF32Inf = 0x7F800000u;
constexpr uint32_t kF32QuietNan = 0x7FC00000u;

uint32_t bits_of(float f) { return std::bit_cast<uint32_t>(f); }
float float_of(uint32_t b) { return std::bit_cast<float>(b); }

// v >> shift, rounded to nearest, ties to even, without a data-dependent branch:
// adding half - 1, plus 1 when the kept LSB is odd, carries into the kept bits
// exactly when the dropped bits are above half, or equal to half with an odd LSB.
// shift in [1, 31]; v + (1 << shift) must not overflow.
constexpr uint32_t shift_right_rne(uint32_t v, int shift) {
  return (v + ((1u << (shift - 1)) - 1) + ((v >> shift) & 1u)) >> shift;
}

// Rounds a finite, non-negative f32 (given as bits) to a binary format with
// mant_bits stored mantissa bits and exponent bias `bias`, ties to even, with
// subnormals. Returns the magnitude code (exponent and mantissa fields). It is not
// clamped: a code past the format's largest finite one means overflow, and the
// caller decides what that becomes. Codes are monotonic in the value, so a carry
// out of the mantissa correctly bumps the exponent.
constexpr uint32_t round_to_format(uint32_t abs_bits, int mant_bits, int bias) {
  const int f32_exp = static_cast<int>(abs_bits >> 23);
  const int shift = 23 - mant_bits;
  const int min_f32_exp = 128 - bias;  // f32 exponent field of the target's min normal
  if (f32_exp >= min_f32_exp || (f32_exp == 0 && min_f32_exp <= 1)) {
    // Normal in the target: rebias the exponent in place and round off the low
    // mantissa bits; the f32 bits are then the target's bits, shifted.
    return shift_right_rne(abs_bits - (static_cast<uint32_t>(127 - bias) << 23), shift);
  }
  // Subnormal in the target: the significand (with its implicit bit unless the
  // input is an f32 subnormal) is shifted further by how far e is below min.
  uint32_t sig = abs_bits & 0x7FFFFFu;
  if (f32_exp != 0) sig |= 0x800000u;
  const int extra = min_f32_exp - (f32_exp == 0 ? 1 : f32_exp);
  // sig < 2^24, so at a total shift of 25 even a tie is impossible: it rounds to 0.
  if (shift + extra >= 25) return 0;
  // A result of 1 << mant_bits is the smallest normal's code, which is right.
  return shift_right_rne(sig, shift + extra);
}

// f32 bits of a finite code of a small binary format (no special values here).
constexpr uint32_t decode_binary(uint32_t code, int exp_bits, int mant_bits, int bias) {
  const uint32_t sign = (code >> (exp_bits + mant_bits)) & 1u;
  const uint32_t mant_mask = (1u << mant_bits) - 1;
  const int exp = static_cast<int>((code >> mant_bits) & ((1u << exp_bits) - 1));
  uint32_t mant = code & mant_mask;
  uint32_t out = sign << 31;
  if (exp == 0) {
    if (mant == 0) return out;  // signed zero
    // Subnormal: normalise so the leading one becomes the implicit bit.
    int e = 1 - bias;
    while ((mant & (1u << mant_bits)) == 0) {
      mant <<= 1;
      --e;
    }
    mant &= mant_mask;
    return out | (static_cast<uint32_t>(e + 127) << 23) | (mant << (23 - mant_bits));
  }
  return out | (static_cast<uint32_t>(exp - bias + 127) << 23) | (mant << (23 - mant_bits));
}

constexpr std::array<uint32_t, 256> make_e4m3fn_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t c = 0; c < 256; ++c) {
    // OFP8: S.1111.111 is the only NaN; S.1111.xxx is otherwise a normal number.
    t[c] = (c & 0x7F) == 0x7F ? ((c & 0x80) << 24) | kF32QuietNan : decode_binary(c, 4, 3, 7);
  }
  return t;
}

constexpr std::array<uint32_t, 256> make_e5m2_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t c = 0; c < 256; ++c) {
    const uint32_t sign = (c & 0x80) << 24;
    if ((c & 0x7C) == 0x7C) {
      // Exponent all ones: Inf, or a NaN whose payload is kept and made quiet.
      t[c] = (c & 3) == 0 ? sign | kF32Inf : sign | kF32QuietNan | ((c & 3) << 21);
    } else {
      t[c] = decode_binary(c, 5, 2, 15);
    }
  }
  return t;
}

constexpr std::array<uint32_t, 256> make_e8m0_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t c = 0; c < 256; ++c) {
    if (c == 0xFF) {
      t[c] = kF32QuietNan;
    } else if (c == 0) {
      t[c] = 0x00400000u;  // 2^-127 is an f32 subnormal
    } else {
      t[c] = c << 23;  // 2^(c-127) has f32 exponent field c
    }
  }
  return t;
}

constexpr std::array<uint32_t, 16> make_e2m1_table() {
  std::array<uint32_t, 16> t{};
  for (uint32_t c = 0; c < 16; ++c) t[c] = decode_binary(c, 2, 1, 1);
  return t;
}

constexpr std::array<uint32_t, 256> kE4m3fnTable = make_e4m3fn_table();
constexpr std::array<uint32_t, 256> kE5m2Table = make_e5m2_table();
constexpr std::array<uint32_t, 256> kE8m0Table = make_e8m0_table();
constexpr std::array<uint32_t, 16> kE2m1Table = make_e2m1_table();

static_assert(kE4m3fnTable[0x7E] == 0x43E00000u);  // 448
static_assert(kE5m2Table[0x7B] == 0x47600000u);    // 57344
static_assert(kE2m1Table[0x7] == 0x40C00000u);     // 6
static_assert(kE2m1Table[0x1] == 0x3F000000u);     // 0.5

// Encoders shared by the scalar entry points and the bulk loops (internal, so
// the bulk loops inline them).

uint16_t encode_f16(uint32_t b) {
  const uint32_t sign = (b >> 16) & 0x8000u;
  const uint32_t a = b & kF32Abs;
  // NaN keeps its top payload bits and is made quiet (as F16C does).
  if (a > kF32Inf) return static_cast<uint16_t>(sign | 0x7E00u | ((a >> 13) & 0x3FFu));
  if (a == kF32Inf) return static_cast<uint16_t>(sign | 0x7C00u);
  uint32_t code = round_to_format(a, 10, 15);
  if (code >= 0x7C00u) code = 0x7C00u;  // overflow: Inf (IEEE 754 7.4, to nearest)
  return static_cast<uint16_t>(sign | code);
}

uint8_t encode_e2m1(uint32_t b) {
  const uint32_t sign = (b >> 28) & 0x8u;
  const uint32_t a = b & kF32Abs;
  // e2m1 has no NaN (MX v1.0 sec. 5.3.3), so no code is faithful: use +0. (ml_dtypes
  // 0.6.0 gives a zero of the opposite sign, which is not worth copying.)
  if (a > kF32Inf) return 0;
  if (a == kF32Inf) return static_cast<uint8_t>(sign | 0x7u);
  uint32_t code = round_to_format(a, 1, 1);
  if (code > 0x7u) code = 0x7u;  // saturate to +-6
  return static_cast<uint8_t>(sign | code);
}

struct NameEntry {
  DType type;
  std::string_view name;
};

// safetensors 0.8.0 header names (its Dtype enum: "F8_E8M0" for e8m0 and "F4"
// for e2m1, whose header shape counts elements, two per byte).
constexpr NameEntry kNames[] = {
    {DType::kF64, "F64"},         {DType::kF32, "F32"},         {DType::kF16, "F16"},
    {DType::kBF16, "BF16"},       {DType::kF8E4M3, "F8_E4M3"},  {DType::kF8E5M2, "F8_E5M2"},
    {DType::kE8M0, "F8_E8M0"},    {DType::kF4E2M1, "F4"},       {DType::kI64, "I64"},
    {DType::kI32, "I32"},         {DType::kI16, "I16"},         {DType::kI8, "I8"},
    {DType::kU8, "U8"},           {DType::kBool, "BOOL"},
};

template <typename T>
void ints_to_f32(const void* src, float* dst, size_t n) {
  const auto* p = static_cast<const unsigned char*>(src);
  for (size_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, p + i * sizeof(T), sizeof(T));  // src may be unaligned (mmap)
    dst[i] = static_cast<float>(v);                  // by value, to nearest
  }
}

template <typename T, typename F>
void store_each(const float* src, void* dst, size_t n, F convert) {
  auto* p = static_cast<unsigned char*>(dst);
  for (size_t i = 0; i < n; ++i) {
    T v = convert(src[i]);
    std::memcpy(p + i * sizeof(T), &v, sizeof(T));
  }
}

}  // namespace

int dtype_bits(DType t) {
  switch (t) {
    case DType::kF64: case DType::kI64: return 64;
    case DType::kF32: case DType::kI32: return 32;
    case DType::kF16: case DType::kBF16: case DType::kI16: return 16;
    case DType::kF8E4M3: case DType::kF8E5M2: case DType::kE8M0:
    case DType::kI8: case DType::kU8: case DType::kBool: return 8;
    case DType::kF4E2M1: return 4;
  }
  assert_fail("valid DType", __FILE__, __LINE__);
}

std::string_view dtype_name(DType t) {
  for (const auto& e : kNames) {
    if (e.type == t) return e.name;
  }
  assert_fail("valid DType", __FILE__, __LINE__);
}

std::optional<DType> dtype_from_name(std::string_view name) {
  for (const auto& e : kNames) {
    if (e.name == name) return e.type;
  }
  return std::nullopt;
}

size_t dtype_bytes(DType t, size_t n) {
  const size_t bits = static_cast<size_t>(dtype_bits(t));
  if (bits == 4) return n / 2 + (n & 1);
  return n * (bits / 8);
}

// ---- f16 / bf16 ----

float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  if ((h & 0x7C00u) == 0x7C00u) {
    const uint32_t mant = h & 0x3FFu;
    // Inf, or NaN with its payload kept and the quiet bit set (as F16C does).
    return float_of(mant == 0 ? sign | kF32Inf : sign | kF32QuietNan | (mant << 13));
  }
  return float_of(decode_binary(h, 5, 10, 15));
}

uint16_t f32_to_f16(float f) { return encode_f16(bits_of(f)); }

float bf16_to_f32(uint16_t b) {
  // bf16 is the top half of binary32: exact, NaN bits kept as they are.
  return float_of(static_cast<uint32_t>(b) << 16);
}

uint16_t f32_to_bf16(float f) {
  const uint32_t b = bits_of(f);
  if ((b & kF32Abs) > kF32Inf) return static_cast<uint16_t>((b >> 16) | 0x0040u);  // quiet
  // Round the low 16 bits to nearest even; a carry moves into the exponent, and
  // past the largest finite value it lands exactly on Inf.
  const uint32_t r = b + 0x7FFFu + ((b >> 16) & 1u);
  return static_cast<uint16_t>(r >> 16);
}

// ---- OCP 8-bit and MX formats ----

float e4m3fn_to_f32(uint8_t v) { return float_of(kE4m3fnTable[v]); }

uint8_t f32_to_e4m3fn(float f, Saturation sat) {
  const uint32_t b = bits_of(f);
  const uint32_t sign = (b >> 24) & 0x80u;
  const uint32_t a = b & kF32Abs;
  const uint32_t over = sat == Saturation::kSaturate ? 0x7Eu : 0x7Fu;  // max or NaN
  if (a > kF32Inf) return static_cast<uint8_t>(sign | 0x7Fu);
  if (a == kF32Inf) return static_cast<uint8_t>(sign | over);
  uint32_t code = round_to_format(a, 3, 7);
  // 0x7F would be 480 if it were a number; rounding there (from >= 464, where the
  // tie goes to the even 448) or beyond is overflow.
  if (code > 0x7Eu) code = over;
  return static_cast<uint8_t>(sign | code);
}

float e5m2_to_f32(uint8_t v) { return float_of(kE5m2Table[v]); }

uint8_t f32_to_e5m2(float f, Saturation sat) {
  const uint32_t b = bits_of(f);
  const uint32_t sign = (b >> 24) & 0x80u;
  const uint32_t a = b & kF32Abs;
  const uint32_t over = sat == Saturation::kSaturate ? 0x7Bu : 0x7Cu;  // max or Inf
  if (a > kF32Inf) return static_cast<uint8_t>(sign | 0x7Eu);  // canonical quiet NaN
  if (a == kF32Inf) return static_cast<uint8_t>(sign | over);
  uint32_t code = round_to_format(a, 2, 15);
  if (code > 0x7Bu) code = over;
  return static_cast<uint8_t>(sign | code);
}

float e8m0_to_f32(uint8_t v) { return float_of(kE8m0Table[v]); }

// Rounding rule: matches ml_dtypes 0.6.0's float8_e8m0fnu cast, checked on all
// 2^32 f32 inputs (tools/make_dtype_tables.py --verify-e8m0). ml_dtypes rounds
// to nearest-even on the significand with no mantissa bits kept, and the bit it
// calls "even" is the implicit leading one, so (ml_dtypes
// ml_dtypes/include/float8.h, ConvertImpl + RoundBitsToNearestEven):
//   - normal x = 1.m * 2^e: 2^(e+1) if m >= 0.5 (ties up, on the linear scale,
//     not at the geometric midpoint sqrt(2) * 2^e), else 2^e;
//   - f32 subnormals: (0, 2^-127] -> code 0 (2^-127), (2^-127, 2^-126) -> code 1;
//   - 0, negative values (including -0), +-Inf, NaN and results past 2^127 -> NaN.
// OCP MX v1.0 does not fix how an arbitrary f32 rounds to an e8m0 value (its
// quantisation derives the scale exponent from floor(log2(amax)) instead); this
// is the plain value cast, as ml_dtypes does it.
uint8_t f32_to_e8m0(float f) {
  const uint32_t b = bits_of(f);
  if (b & kF32Sign) return 0xFF;
  const uint32_t exp = b >> 23;
  const uint32_t frac = b & 0x7FFFFFu;
  if (exp == 0xFF) return 0xFF;
  if (exp == 0) {
    if (frac == 0) return 0xFF;  // no zero in e8m0
    return frac <= 0x400000u ? 0x00 : 0x01;
  }
  const uint32_t code = exp + (frac >= 0x400000u ? 1u : 0u);
  return code > 0xFEu ? 0xFF : static_cast<uint8_t>(code);
}

float e2m1_to_f32(uint8_t nibble) { return float_of(kE2m1Table[nibble & 0xFu]); }

uint8_t f32_to_e2m1(float f) { return encode_e2m1(bits_of(f)); }

// ---- bulk ----

void convert_to_f32(DType t, const void* src, float* dst, size_t n) {
  const auto* bytes = static_cast<const uint8_t*>(src);
  switch (t) {
    case DType::kF32:
      std::memcpy(dst, src, n * sizeof(float));
      return;
    case DType::kF64: ints_to_f32<double>(src, dst, n); return;
    case DType::kF16:
    case DType::kBF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, bytes + 2 * i, 2);
        dst[i] = t == DType::kF16 ? f16_to_f32(h) : bf16_to_f32(h);
      }
      return;
    case DType::kF8E4M3:
      for (size_t i = 0; i < n; ++i) dst[i] = float_of(kE4m3fnTable[bytes[i]]);
      return;
    case DType::kF8E5M2:
      for (size_t i = 0; i < n; ++i) dst[i] = float_of(kE5m2Table[bytes[i]]);
      return;
    case DType::kE8M0:
      for (size_t i = 0; i < n; ++i) dst[i] = float_of(kE8m0Table[bytes[i]]);
      return;
    case DType::kF4E2M1:
      // Element 2k is the low nibble of byte k, element 2k+1 the high nibble
      // (torch float4_e2m1fn_x2 layout, as safetensors "F4" stores it).
      for (size_t i = 0; i < n; ++i) {
        const uint8_t byte = bytes[i / 2];
        dst[i] = float_of(kE2m1Table[(i & 1) ? byte >> 4 : byte & 0xFu]);
      }
      return;
    case DType::kI64: ints_to_f32<int64_t>(src, dst, n); return;
    case DType::kI32: ints_to_f32<int32_t>(src, dst, n); return;
    case DType::kI16: ints_to_f32<int16_t>(src, dst, n); return;
    case DType::kI8: ints_to_f32<int8_t>(src, dst, n); return;
    case DType::kU8: ints_to_f32<uint8_t>(src, dst, n); return;
    case DType::kBool:
      for (size_t i = 0; i < n; ++i) dst[i] = bytes[i] != 0 ? 1.0f : 0.0f;
      return;
  }
  assert_fail("valid DType", __FILE__, __LINE__);
}

void convert_from_f32(DType t, const float* src, void* dst, size_t n) {
  switch (t) {
    case DType::kF32:
      std::memcpy(dst, src, n * sizeof(float));
      return;
    // Lambdas rather than function pointers, so the conversions are inlined.
    case DType::kF16:
      store_each<uint16_t>(src, dst, n, [](float f) { return encode_f16(bits_of(f)); });
      return;
    case DType::kBF16:
      store_each<uint16_t>(src, dst, n, [](float f) { return f32_to_bf16(f); });
      return;
    case DType::kF8E4M3:
      store_each<uint8_t>(src, dst, n, [](float f) { return f32_to_e4m3fn(f); });
      return;
    case DType::kF8E5M2:
      store_each<uint8_t>(src, dst, n, [](float f) { return f32_to_e5m2(f); });
      return;
    case DType::kF4E2M1: {
      auto* out = static_cast<uint8_t*>(dst);
      for (size_t i = 0; i + 1 < n; i += 2) {
        out[i / 2] = static_cast<uint8_t>(encode_e2m1(bits_of(src[i])) |
                                          (encode_e2m1(bits_of(src[i + 1])) << 4));
      }
      if (n & 1) out[n / 2] = encode_e2m1(bits_of(src[n - 1]));  // odd tail: high nibble 0
      return;
    }
    default:
      throw Error("cannot convert f32 to " + std::string(dtype_name(t)) +
                  ": only F32, F16, BF16, F8_E4M3, F8_E5M2 and F4 are supported");
  }
}

}  // namespace quanta
