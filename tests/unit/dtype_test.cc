// Tests of src/quanta/core/dtype.cc against independent references:
//  - f16/bf16: every code round-trips; every one of the 2^32 f32 inputs is checked
//    against the F16C instruction (f16) and a distance comparison in double (bf16).
//  - e4m3fn, e5m2, e8m0, e2m1: decode tables and encode cases from ml_dtypes 0.6.0
//    (tests/unit/data/dtypes, written by tools/make_dtype_tables.py), plus a dense
//    f32 sweep for e4m3fn, e5m2 and e2m1 in both saturation modes (exhaustive over
//    every input that can round to a nonzero finite code, strided outside; see
//    sweep_format) against a nearest-value search with ties to the even code.
#include "quanta/core/dtype.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define QUANTA_TEST_HAVE_X86 1
#endif

#include "quanta/core/error.h"
#include "test_util.h"

namespace quanta {
namespace {

uint32_t bits_of(float f) { return std::bit_cast<uint32_t>(f); }
float float_of(uint32_t b) { return std::bit_cast<float>(b); }

// ---- sweep helpers ----

// Outcome of checking a range of inputs: how many disagreed, and the first one.
struct SweepResult {
  uint64_t bad = 0;
  uint32_t input = 0;
  uint32_t got = 0;
  uint32_t want = 0;

  void record(uint32_t in, uint32_t g, uint32_t w) {
    if (bad++ == 0) {
      input = in;
      got = g;
      want = w;
    }
  }
  void merge(const SweepResult& o) {
    if (o.bad != 0 && bad == 0) {
      input = o.input;
      got = o.got;
      want = o.want;
    }
    bad += o.bad;
  }
};

std::string describe(const SweepResult& r) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "%llu mismatches; first: input 0x%08x (%.9g) got 0x%x want 0x%x",
                static_cast<unsigned long long>(r.bad), r.input, float_of(r.input), r.got, r.want);
  return buf;
}

// Runs check(begin, end) on [begin, end) split over the machine's cores (at most
// four), so the 2^32 sweeps take seconds.
template <typename Check>
SweepResult parallel_sweep(uint64_t begin, uint64_t end, Check check) {
  const unsigned n = std::clamp(std::thread::hardware_concurrency(), 1u, 4u);
  std::vector<SweepResult> results(n);
  std::vector<std::thread> threads;
  const uint64_t step = (end - begin + n - 1) / n;
  for (unsigned t = 0; t < n; ++t) {
    const uint64_t lo = std::min(end, begin + t * step);
    const uint64_t hi = std::min(end, lo + step);
    threads.emplace_back([&results, t, lo, hi, &check] { results[t] = check(lo, hi); });
  }
  for (auto& th : threads) th.join();
  SweepResult all;
  for (const auto& r : results) all.merge(r);
  return all;
}

bool is_nan_bits(uint32_t b) { return (b & 0x7FFFFFFFu) > 0x7F800000u; }

// ---- golden files ----

std::string golden_path(const std::string& file) {
  return test::source_path("tests/unit/data/dtypes/" + file);
}

std::vector<uint32_t> read_decode_table(const std::string& fmt, size_t codes) {
  const std::string bytes = test::read_file(golden_path(fmt + "_decode.bin"));
  EXPECT_EQ(bytes.size(), codes * 4) << fmt;
  std::vector<uint32_t> out(bytes.size() / 4);
  for (size_t i = 0; i < out.size(); ++i) {
    const auto* p = reinterpret_cast<const unsigned char*>(bytes.data()) + 4 * i;
    out[i] = p[0] | (p[1] << 8) | (p[2] << 16) | (static_cast<uint32_t>(p[3]) << 24);
  }
  return out;
}

struct EncodeCase {
  uint32_t input;  // f32 bits
  uint8_t code;    // ml_dtypes' cast
};

std::vector<EncodeCase> read_encode_cases(const std::string& fmt) {
  const std::string bytes = test::read_file(golden_path(fmt + "_encode.bin"));
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  auto u32 = [&](size_t off) {
    return p[off] | (p[off + 1] << 8) | (p[off + 2] << 16) |
           (static_cast<uint32_t>(p[off + 3]) << 24);
  };
  if (bytes.size() < 4) {
    ADD_FAILURE() << fmt << " encode file too short";
    return {};
  }
  const size_t n = u32(0);
  if (bytes.size() != 4 + 5 * n) {
    ADD_FAILURE() << fmt << " encode file size " << bytes.size() << " for " << n << " cases";
    return {};
  }
  std::vector<EncodeCase> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = {u32(4 + 4 * i), p[4 + 4 * n + i]};
  return out;
}

// ---- names and sizes ----

TEST(DTypeNames, AreTheSafetensorsNames) {
  const std::pair<DType, const char*> names[] = {
      {DType::kF64, "F64"},      {DType::kF32, "F32"},         {DType::kF16, "F16"},
      {DType::kBF16, "BF16"},    {DType::kF8E4M3, "F8_E4M3"},  {DType::kF8E5M2, "F8_E5M2"},
      {DType::kE8M0, "F8_E8M0"}, {DType::kF4E2M1, "F4"},       {DType::kI64, "I64"},
      {DType::kI32, "I32"},      {DType::kI16, "I16"},         {DType::kI8, "I8"},
      {DType::kU8, "U8"},        {DType::kBool, "BOOL"},
  };
  for (const auto& [type, name] : names) {
    EXPECT_EQ(dtype_name(type), name);
    ASSERT_TRUE(dtype_from_name(name).has_value()) << name;
    EXPECT_EQ(*dtype_from_name(name), type) << name;
  }
  for (const char* unknown : {"", "f32", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "F6_E2M3", "U16",
                              "C64", "F8_E8M0FNU", "FP4", "F32 "}) {
    EXPECT_FALSE(dtype_from_name(unknown).has_value()) << unknown;
  }
}

TEST(DTypeSizes, BitsAndBytes) {
  EXPECT_EQ(dtype_bits(DType::kF64), 64);
  EXPECT_EQ(dtype_bits(DType::kI64), 64);
  EXPECT_EQ(dtype_bits(DType::kF32), 32);
  EXPECT_EQ(dtype_bits(DType::kI32), 32);
  EXPECT_EQ(dtype_bits(DType::kF16), 16);
  EXPECT_EQ(dtype_bits(DType::kBF16), 16);
  EXPECT_EQ(dtype_bits(DType::kI16), 16);
  for (DType t :
       {DType::kF8E4M3, DType::kF8E5M2, DType::kE8M0, DType::kI8, DType::kU8, DType::kBool}) {
    EXPECT_EQ(dtype_bits(t), 8) << dtype_name(t);
    EXPECT_EQ(dtype_bytes(t, 7), 7u);
  }
  EXPECT_EQ(dtype_bits(DType::kF4E2M1), 4);
  EXPECT_EQ(dtype_bytes(DType::kF4E2M1, 0), 0u);
  EXPECT_EQ(dtype_bytes(DType::kF4E2M1, 1), 1u);
  EXPECT_EQ(dtype_bytes(DType::kF4E2M1, 6), 3u);
  EXPECT_EQ(dtype_bytes(DType::kF4E2M1, 7), 4u);
  EXPECT_EQ(dtype_bytes(DType::kF64, 3), 24u);
  EXPECT_EQ(dtype_bytes(DType::kBF16, 3), 6u);
  EXPECT_EQ(dtype_bytes(DType::kF32, 0), 0u);
}

// ---- f16 ----

// binary16 value from its fields (IEEE 754 3.4), computed in double.
double f16_value(uint16_t h) {
  const int exp = (h >> 10) & 0x1F;
  const int mant = h & 0x3FF;
  const double mag = exp == 0 ? std::ldexp(mant, -24) : std::ldexp(1024 + mant, exp - 25);
  return (h & 0x8000) ? -mag : mag;
}

TEST(F16, EveryCodeDecodesAndRoundTrips) {
  for (uint32_t c = 0; c < 65536; ++c) {
    const uint16_t h = static_cast<uint16_t>(c);
    const float f = f16_to_f32(h);
    const bool sign = (h & 0x8000) != 0;
    EXPECT_EQ(std::signbit(f), sign) << std::hex << c;
    if ((h & 0x7C00) == 0x7C00) {
      if ((h & 0x3FF) == 0) {
        EXPECT_TRUE(std::isinf(f)) << std::hex << c;
        EXPECT_EQ(f32_to_f16(f), h);
      } else {
        // NaN: stays NaN with its payload, and comes back quiet.
        ASSERT_TRUE(std::isnan(f)) << std::hex << c;
        EXPECT_EQ(bits_of(f) & 0x7FFFFF, 0x400000u | ((h & 0x3FFu) << 13)) << std::hex << c;
        EXPECT_EQ(f32_to_f16(f), h | 0x200) << std::hex << c;
      }
      continue;
    }
    EXPECT_EQ(static_cast<double>(f), f16_value(h)) << std::hex << c;
    EXPECT_EQ(f32_to_f16(f), h) << std::hex << c;
  }
}

TEST(F16, KnownValues) {
  EXPECT_EQ(f32_to_f16(1.0f), 0x3C00);
  EXPECT_EQ(f32_to_f16(-2.0f), 0xC000);
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7BFF);       // max finite
  EXPECT_EQ(f32_to_f16(65519.996f), 0x7BFF);     // just below the overflow midpoint
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7C00);       // midpoint: ties to even, which is Inf
  EXPECT_EQ(f32_to_f16(1e10f), 0x7C00);
  EXPECT_EQ(f32_to_f16(-1e10f), 0xFC00);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -24)), 0x0001);  // smallest subnormal
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);  // half of it: tie to even 0
  EXPECT_EQ(f32_to_f16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x0001);
  EXPECT_EQ(f32_to_f16(std::ldexp(3.0f, -25)), 0x0002);  // 1.5 ulp: tie to even 2
  EXPECT_EQ(f32_to_f16(-0.0f), 0x8000);
  EXPECT_EQ(f32_to_f16(1.0f / 3.0f), 0x3555);
  EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3C00);  // tie down to even
  EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(3.0f, -11)), 0x3C02);  // tie up to even
  EXPECT_EQ(f32_to_f16(std::numeric_limits<float>::quiet_NaN()) & 0x7E00, 0x7E00);
  EXPECT_EQ(f32_to_f16(float_of(0x7F800001u)), 0x7E00);  // signalling NaN comes out quiet
  EXPECT_EQ(f32_to_f16(float_of(0xFFC00000u)), 0xFE00);
}

// The 2^32 sweeps go through convert_from_f32 in blocks (it calls f32_to_f16 /
// f32_to_bf16 per element) so the call overhead does not dominate the run time.
constexpr size_t kBlock = 4096;

// Fills in[] with the f32s whose bit patterns are base .. base + kBlock - 1.
void fill_block(uint64_t base, float* in) {
  for (size_t j = 0; j < kBlock; ++j) in[j] = float_of(static_cast<uint32_t>(base + j));
}

#ifdef QUANTA_TEST_HAVE_X86
// Every f32 against the F16C conversion instruction (round to nearest even).
__attribute__((target("f16c"))) SweepResult f16_sweep_vs_f16c(uint64_t lo, uint64_t hi) {
  SweepResult r;
  alignas(16) float in[kBlock];
  alignas(16) uint16_t got[kBlock];
  alignas(16) uint16_t want[kBlock];
  for (uint64_t base = lo; base < hi; base += kBlock) {
    fill_block(base, in);
    convert_from_f32(DType::kF16, in, got, kBlock);
    for (size_t j = 0; j < kBlock; j += 4) {
      const __m128i h = _mm_cvtps_ph(_mm_load_ps(in + j), _MM_FROUND_TO_NEAREST_INT);
      _mm_storel_epi64(reinterpret_cast<__m128i*>(want + j), h);
    }
    if (std::memcmp(got, want, sizeof got) != 0) {
      for (size_t j = 0; j < kBlock; ++j) {
        if (got[j] != want[j]) r.record(static_cast<uint32_t>(base + j), got[j], want[j]);
      }
    }
  }
  return r;
}
#endif

TEST(F16, AllF32InputsMatchF16C) {
#ifdef QUANTA_TEST_HAVE_X86
  if (!__builtin_cpu_supports("f16c")) GTEST_SKIP() << "CPU has no F16C";
  const SweepResult r = parallel_sweep(0, uint64_t{1} << 32, f16_sweep_vs_f16c);
  EXPECT_EQ(r.bad, 0u) << describe(r);
#else
  GTEST_SKIP() << "F16C reference needs x86";
#endif
}

TEST(F16, ScalarMatchesF16CSamples) {
  // The sweep above goes through convert_from_f32; check the scalar entry point
  // too, on a stride through all bit patterns.
#ifdef QUANTA_TEST_HAVE_X86
  if (!__builtin_cpu_supports("f16c")) GTEST_SKIP() << "CPU has no F16C";
  std::vector<float> in;
  for (uint64_t i = 0; i < (uint64_t{1} << 32); i += 4093) {
    in.push_back(float_of(static_cast<uint32_t>(i)));
  }
  while (in.size() % kBlock) in.push_back(0.0f);
  for (size_t base = 0; base < in.size(); base += kBlock) {
    std::vector<uint16_t> want(kBlock);
    [&]() __attribute__((target("f16c"))) {
      for (size_t j = 0; j < kBlock; j += 4) {
        const __m128 x = _mm_loadu_ps(in.data() + base + j);
        const __m128i h = _mm_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT);
        _mm_storel_epi64(reinterpret_cast<__m128i*>(want.data() + j), h);
      }
    }();
    for (size_t j = 0; j < kBlock; ++j) {
      ASSERT_EQ(f32_to_f16(in[base + j]), want[j]) << std::hex << bits_of(in[base + j]);
    }
  }
#else
  GTEST_SKIP() << "F16C reference needs x86";
#endif
}

// ---- bf16 ----

TEST(BF16, EveryCodeDecodesAndRoundTrips) {
  for (uint32_t c = 0; c < 65536; ++c) {
    const uint16_t h = static_cast<uint16_t>(c);
    const float f = bf16_to_f32(h);
    EXPECT_EQ(bits_of(f), c << 16) << std::hex << c;  // bf16 is the top half of f32
    if ((h & 0x7F80) == 0x7F80 && (h & 0x7F) != 0) {
      ASSERT_TRUE(std::isnan(f));
      EXPECT_EQ(f32_to_bf16(f), h | 0x40) << std::hex << c;  // comes back quiet
    } else {
      EXPECT_EQ(f32_to_bf16(f), h) << std::hex << c;
    }
  }
}

// Reference: let the FPU round. Adding C = 2^(e+45) to |x| (x in binade 2^e) in
// double leaves exactly 8 significant bits of x above C's last bit, so the
// hardware's round-to-nearest-even of the sum is bf16 rounding; subtracting C
// back is exact. Below 2^-126 the bf16 spacing is fixed at 2^-133, so C is too.
uint16_t bf16_reference(uint32_t in) {
  const uint32_t sign = in & 0x80000000u;
  const uint32_t a = in & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return static_cast<uint16_t>((in >> 16) | 0x40);
  if (a == 0x7F800000u) return static_cast<uint16_t>((sign | a) >> 16);
  const int e = std::max(static_cast<int>(a >> 23), 1) - 127;  // binade of x
  const double c = std::bit_cast<double>(static_cast<uint64_t>(e + 45 + 1023) << 52);
  const double x = float_of(a);
  const double r = (x + c) - c;  // two IEEE operations: not folded without -ffast-math
  const uint32_t rb = r >= 0x1p128 ? 0x7F800000u : bits_of(static_cast<float>(r));
  return static_cast<uint16_t>((sign | rb) >> 16);
}

TEST(BF16, AllF32InputsMatchDoubleReference) {
  // Finite magnitudes, with both signs. A block of 4096 consecutive bit patterns
  // lies in one binade, so bf16_reference's constant C is computed once per block.
  SweepResult r = parallel_sweep(0, 0x7F800000u, [](uint64_t lo, uint64_t hi) {
    SweepResult res;
    std::vector<float> pos(kBlock), neg(kBlock);
    std::vector<uint16_t> got_pos(kBlock), got_neg(kBlock);
    for (uint64_t base = lo; base < hi; base += kBlock) {
      fill_block(base, pos.data());
      fill_block(base | 0x80000000u, neg.data());
      convert_from_f32(DType::kBF16, pos.data(), got_pos.data(), kBlock);
      convert_from_f32(DType::kBF16, neg.data(), got_neg.data(), kBlock);
      const int e = std::max(static_cast<int>(base >> 23), 1) - 127;
      const double c = std::bit_cast<double>(static_cast<uint64_t>(e + 45 + 1023) << 52);
      for (size_t j = 0; j < kBlock; ++j) {
        const double rounded = (static_cast<double>(pos[j]) + c) - c;
        const uint32_t rb = rounded >= 0x1p128 ? 0x7F800000u : bits_of(static_cast<float>(rounded));
        const uint16_t want = static_cast<uint16_t>(rb >> 16);
        if (got_pos[j] != want) res.record(static_cast<uint32_t>(base + j), got_pos[j], want);
        if (got_neg[j] != (want | 0x8000)) {
          res.record(static_cast<uint32_t>(base + j) | 0x80000000u, got_neg[j], want | 0x8000);
        }
      }
    }
    return res;
  });
  // Inf and NaNs, both signs.
  for (uint64_t i = 0x7F800000u; i < 0x80000000u; ++i) {
    for (uint32_t s : {0u, 0x80000000u}) {
      const uint32_t input = static_cast<uint32_t>(i) | s;
      const uint16_t got = f32_to_bf16(float_of(input));
      const uint16_t want = bf16_reference(input);
      if (got != want) r.record(input, got, want);
    }
  }
  EXPECT_EQ(r.bad, 0u) << describe(r);
}

TEST(BF16, ScalarMatchesReferenceSamples) {
  for (uint64_t i = 0; i < (uint64_t{1} << 32); i += 4093) {
    const uint32_t in = static_cast<uint32_t>(i);
    ASSERT_EQ(f32_to_bf16(float_of(in)), bf16_reference(in)) << std::hex << in;
  }
}

TEST(BF16, KnownValues) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(f32_to_bf16(float_of(0x3F808000u)), 0x3F80);  // tie to even (down)
  EXPECT_EQ(f32_to_bf16(float_of(0x3F818000u)), 0x3F82);  // tie to even (up)
  EXPECT_EQ(f32_to_bf16(float_of(0x3F808001u)), 0x3F81);
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::max()), 0x7F80);  // rounds to Inf
  EXPECT_EQ(f32_to_bf16(-std::numeric_limits<float>::infinity()), 0xFF80);
  EXPECT_EQ(f32_to_bf16(float_of(0x00000001u)), 0x0000);  // tiny subnormal
  EXPECT_EQ(f32_to_bf16(float_of(0x00008000u)), 0x0000);  // subnormal tie to even
  EXPECT_EQ(f32_to_bf16(float_of(0x00018000u)), 0x0002);
  EXPECT_EQ(f32_to_bf16(float_of(0x7F800001u)), 0x7FC0);  // quiet NaN
}

// ---- 8-bit and 4-bit formats: ml_dtypes golden tables ----

struct NarrowFormat {
  const char* name;  // golden file prefix
  int codes;         // 256 or 16
  float (*decode)(uint8_t);
};

const NarrowFormat kNarrow[] = {
    {"e4m3fn", 256, e4m3fn_to_f32},
    {"e5m2", 256, e5m2_to_f32},
    {"e8m0", 256, e8m0_to_f32},
    {"e2m1", 16, e2m1_to_f32},
};

uint8_t encode_nonsat(const std::string& fmt, float f) {
  if (fmt == "e4m3fn") return f32_to_e4m3fn(f, Saturation::kNonSaturating);
  if (fmt == "e5m2") return f32_to_e5m2(f, Saturation::kNonSaturating);
  if (fmt == "e8m0") return f32_to_e8m0(f);
  return f32_to_e2m1(f);
}

TEST(NarrowFloats, EveryCodeDecodesToOracleValue) {
  for (const auto& fmt : kNarrow) {
    const std::vector<uint32_t> want = read_decode_table(fmt.name, fmt.codes);
    ASSERT_EQ(want.size(), static_cast<size_t>(fmt.codes));
    for (int c = 0; c < fmt.codes; ++c) {
      const uint32_t got = bits_of(fmt.decode(static_cast<uint8_t>(c)));
      if (is_nan_bits(want[c])) {
        // NaN classes compared as NaN, with the sign (e8m0 has none).
        EXPECT_TRUE(is_nan_bits(got)) << fmt.name << " code " << c;
        if (std::string(fmt.name) != "e8m0") {
          EXPECT_EQ(got >> 31, want[c] >> 31) << fmt.name << " code " << c;
        }
      } else {
        EXPECT_EQ(got, want[c]) << fmt.name << " code 0x" << std::hex << c;
      }
    }
  }
}

TEST(NarrowFloats, EncodeMatchesOracle) {
  for (const auto& fmt : kNarrow) {
    const std::vector<EncodeCase> cases = read_encode_cases(fmt.name);
    EXPECT_GT(cases.size(), 1000u) << fmt.name;
    int failures = 0;
    for (const auto& c : cases) {
      const uint8_t got = encode_nonsat(fmt.name, float_of(c.input));
      if (got != c.code && ++failures <= 10) {
        ADD_FAILURE() << fmt.name << ": input 0x" << std::hex << c.input << " ("
                      << float_of(c.input) << ") got 0x" << int(got) << " want 0x" << int(c.code);
      }
    }
    EXPECT_EQ(failures, 0) << fmt.name;
  }
}

// ml_dtypes has no saturating cast: derive it from the non-saturating golden code.
// Overflow (NaN for a non-NaN input in e4m3fn, Inf in e5m2) becomes +-max.
TEST(NarrowFloats, SaturatingEncodeClampsOracleOverflow) {
  struct Sat {
    const char* name;
    uint8_t (*encode)(float, Saturation);
    uint8_t overflow, max;
  };
  const Sat formats[] = {{"e4m3fn", f32_to_e4m3fn, 0x7F, 0x7E}, {"e5m2", f32_to_e5m2, 0x7C, 0x7B}};
  for (const auto& fmt : formats) {
    int clamped = 0;
    for (const auto& c : read_encode_cases(fmt.name)) {
      const float f = float_of(c.input);
      uint8_t want = c.code;
      if (!std::isnan(f) && (c.code & 0x7F) == fmt.overflow) {
        want = static_cast<uint8_t>((c.code & 0x80) | fmt.max);
        ++clamped;
      }
      ASSERT_EQ(fmt.encode(f, Saturation::kSaturate), want)
          << fmt.name << " input 0x" << std::hex << c.input << " (" << f << ")";
    }
    EXPECT_GT(clamped, 10) << fmt.name;
  }
}

TEST(NarrowFloats, ExplicitSpecialValues) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  constexpr auto kSat = Saturation::kSaturate;
  constexpr auto kNon = Saturation::kNonSaturating;
  // e4m3fn: max 448; 464 is the midpoint to the missing 480 and ties to even 448.
  EXPECT_EQ(f32_to_e4m3fn(448.0f, kNon), 0x7E);
  EXPECT_EQ(f32_to_e4m3fn(464.0f, kNon), 0x7E);
  EXPECT_EQ(f32_to_e4m3fn(std::nextafter(464.0f, inf), kNon), 0x7F);
  EXPECT_EQ(f32_to_e4m3fn(std::nextafter(464.0f, inf), kSat), 0x7E);
  EXPECT_EQ(f32_to_e4m3fn(-1e30f, kNon), 0xFF);
  EXPECT_EQ(f32_to_e4m3fn(-1e30f, kSat), 0xFE);
  EXPECT_EQ(f32_to_e4m3fn(inf, kNon), 0x7F);
  EXPECT_EQ(f32_to_e4m3fn(inf, kSat), 0x7E);
  EXPECT_EQ(f32_to_e4m3fn(-inf, kSat), 0xFE);
  EXPECT_EQ(f32_to_e4m3fn(nan, kSat), 0x7F);
  EXPECT_EQ(f32_to_e4m3fn(-nan, kSat), 0xFF);
  EXPECT_EQ(f32_to_e4m3fn(std::ldexp(1.0f, -9), kNon), 0x01);   // smallest subnormal
  EXPECT_EQ(f32_to_e4m3fn(std::ldexp(1.0f, -10), kNon), 0x00);  // half of it: tie to 0
  EXPECT_EQ(f32_to_e4m3fn(-std::ldexp(1.0f, -12), kNon), 0x80);  // underflow keeps sign
  EXPECT_EQ(f32_to_e4m3fn(1.0f), 0x38);
  // e5m2: max 57344; 61440 is the midpoint to Inf and ties to even, which is Inf.
  EXPECT_EQ(f32_to_e5m2(57344.0f, kNon), 0x7B);
  EXPECT_EQ(f32_to_e5m2(std::nextafter(61440.0f, 0.0f), kNon), 0x7B);
  EXPECT_EQ(f32_to_e5m2(61440.0f, kNon), 0x7C);
  EXPECT_EQ(f32_to_e5m2(61440.0f, kSat), 0x7B);
  EXPECT_EQ(f32_to_e5m2(inf, kNon), 0x7C);
  EXPECT_EQ(f32_to_e5m2(-inf, kNon), 0xFC);
  EXPECT_EQ(f32_to_e5m2(inf, kSat), 0x7B);
  EXPECT_EQ(f32_to_e5m2(-inf, kSat), 0xFB);
  EXPECT_EQ(f32_to_e5m2(nan, kSat), 0x7E);
  EXPECT_EQ(f32_to_e5m2(-nan, kNon), 0xFE);
  EXPECT_EQ(f32_to_e5m2(std::ldexp(1.0f, -16)), 0x01);
  EXPECT_EQ(f32_to_e5m2(1.0f), 0x3C);
  // e2m1 saturates; ties to even code (0.25 -> 0, 5 -> 4, 0.75 -> 1).
  EXPECT_EQ(f32_to_e2m1(6.0f), 0x7);
  EXPECT_EQ(f32_to_e2m1(7.0f), 0x7);
  EXPECT_EQ(f32_to_e2m1(1e30f), 0x7);
  EXPECT_EQ(f32_to_e2m1(inf), 0x7);
  EXPECT_EQ(f32_to_e2m1(-inf), 0xF);
  EXPECT_EQ(f32_to_e2m1(nan), 0x0);
  EXPECT_EQ(f32_to_e2m1(-nan), 0x0);
  EXPECT_EQ(f32_to_e2m1(0.25f), 0x0);
  EXPECT_EQ(f32_to_e2m1(-0.25f), 0x8);
  EXPECT_EQ(f32_to_e2m1(0.75f), 0x2);
  EXPECT_EQ(f32_to_e2m1(5.0f), 0x6);
  EXPECT_EQ(f32_to_e2m1(std::nextafter(5.0f, inf)), 0x7);
  EXPECT_EQ(f32_to_e2m1(-3.0f), 0xD);
  // e8m0: powers of two; the linear midpoint 1.5 * 2^k rounds up.
  EXPECT_EQ(f32_to_e8m0(1.0f), 127);
  EXPECT_EQ(f32_to_e8m0(1.5f), 128);
  EXPECT_EQ(f32_to_e8m0(std::nextafter(1.5f, 0.0f)), 127);
  EXPECT_EQ(f32_to_e8m0(3.0f), 129);
  EXPECT_EQ(f32_to_e8m0(std::ldexp(1.0f, 127)), 254);
  EXPECT_EQ(f32_to_e8m0(std::ldexp(1.5f, 127)), 255);  // past the max: NaN
  EXPECT_EQ(f32_to_e8m0(0.0f), 255);
  EXPECT_EQ(f32_to_e8m0(-1.0f), 255);
  EXPECT_EQ(f32_to_e8m0(inf), 255);
  EXPECT_EQ(f32_to_e8m0(nan), 255);
  EXPECT_EQ(f32_to_e8m0(std::ldexp(1.0f, -127)), 0);
  EXPECT_EQ(f32_to_e8m0(std::ldexp(1.0f, -126)), 1);
  EXPECT_EQ(bits_of(e8m0_to_f32(0)), 0x00400000u);  // 2^-127
  EXPECT_EQ(e8m0_to_f32(127), 1.0f);
  EXPECT_EQ(e8m0_to_f32(254), std::ldexp(1.0f, 127));
  EXPECT_TRUE(std::isnan(e8m0_to_f32(255)));
}

// e8m0 over a dense stride of f32 inputs, against the rule restated with frexp
// (the golden file pins the rule to ml_dtypes; this covers the space between).
TEST(NarrowFloats, E8m0DenseStrideMatchesFrexpRule) {
  auto reference = [](float f) -> uint8_t {
    if (std::isnan(f) || std::signbit(f) || f == 0.0f || std::isinf(f)) return 0xFF;
    if (f < std::numeric_limits<float>::min()) return f <= std::ldexp(1.0f, -127) ? 0 : 1;
    int e;
    const float m = std::frexp(f, &e);  // f = m * 2^e, m in [0.5, 1)
    const int code = (e - 1) + 127 + (m >= 0.75f ? 1 : 0);
    return code > 254 ? 0xFF : static_cast<uint8_t>(code);
  };
  const SweepResult r = parallel_sweep(0, uint64_t{1} << 32, [&](uint64_t lo, uint64_t hi) {
    SweepResult res;
    for (uint64_t i = lo; i < hi; i += 61) {
      const uint32_t in = static_cast<uint32_t>(i);
      const uint8_t got = f32_to_e8m0(float_of(in));
      const uint8_t want = reference(float_of(in));
      if (got != want) res.record(in, got, want);
    }
    return res;
  });
  EXPECT_EQ(r.bad, 0u) << describe(r);
}

// ---- exhaustive sweeps for e4m3fn, e5m2, e2m1 ----

struct SweepFormat {
  const char* name;
  int exp_bits, mant_bits, bias;
  uint32_t max_code;       // largest finite magnitude code
  uint32_t overflow_code;  // non-saturating result past max (NaN / Inf), or max
  uint32_t nan_code;       // result for NaN input (magnitude bits)
  uint32_t sign_bit;
  bool nan_keeps_sign;
  uint8_t (*encode)(float, Saturation);
  float (*decode)(uint8_t);
};

// Value of magnitude code k by the binary-format definition (subnormal when the
// exponent field is 0), ignoring special values.
double code_value(const SweepFormat& fmt, uint32_t k) {
  const int exp = static_cast<int>(k >> fmt.mant_bits);
  const double mant = k & ((1u << fmt.mant_bits) - 1);
  const int scale = exp == 0 ? 1 - fmt.bias - fmt.mant_bits : exp - fmt.bias - fmt.mant_bits;
  return std::ldexp(exp == 0 ? mant : mant + (1 << fmt.mant_bits), scale);
}

// Dense check of one format and mode. Non-saturating: every f32 whose magnitude
// lies in [2^(emin_sub - 2), 2^(emax + 2)) is checked with both signs, where
// emin_sub is the exponent of the format's smallest subnormal and emax that of
// its largest value: that is every input that rounds to a nonzero finite code,
// plus two binades of margin each side. Saturating: the window is
// [2^(emax - 1), 2^(emax + 2)), where saturation acts. Outside the window every
// 97th bit pattern is checked; Inf and every NaN always are. A full 2^32 sweep
// per format and mode takes about a minute on the 2-core machine, over the
// test-time budget.
//
// The reference walks the format's values in increasing order alongside the
// increasing f32 magnitudes and moves to the next value once the input passes the
// midpoint (or equals it and the next code is even): a nearest-value search with
// ties to the even code, computed in double from the values' definition.
SweepResult sweep_format(const SweepFormat& fmt, Saturation sat) {
  // Values of magnitude codes 0..max_code, plus one more code treated as an
  // ordinary number (480 for e4m3fn, 65536 for e5m2): rounding to it is overflow.
  const uint32_t top = fmt.overflow_code > fmt.max_code ? fmt.max_code + 1 : fmt.max_code;
  std::vector<double> mid(top + 1);
  for (uint32_t k = 0; k < top; ++k) mid[k] = (code_value(fmt, k) + code_value(fmt, k + 1)) / 2;
  const uint32_t over = sat == Saturation::kSaturate ? fmt.max_code : fmt.overflow_code;

  auto check = [&](uint64_t lo, uint64_t hi, uint64_t stride) {
    SweepResult res;
    uint32_t k = 0;
    for (uint64_t i = lo; i < hi; i += stride) {
      const uint32_t a = static_cast<uint32_t>(i);
      const double x = float_of(a);
      while (k < top && (x > mid[k] || (x == mid[k] && ((k + 1) & 1) == 0))) ++k;
      const uint32_t want = k > fmt.max_code ? over : k;
      const uint32_t got_pos = fmt.encode(float_of(a), sat);
      const uint32_t got_neg = fmt.encode(float_of(a | 0x80000000u), sat);
      if (got_pos != want) res.record(a, got_pos, want);
      if (got_neg != (fmt.sign_bit | want)) {
        res.record(a | 0x80000000u, got_neg, fmt.sign_bit | want);
      }
    }
    return res;
  };
  const int emin_sub = 1 - fmt.bias - fmt.mant_bits;
  const int emax = static_cast<int>(fmt.max_code >> fmt.mant_bits) - fmt.bias;
  // Saturation only changes results from the largest value up: in that mode the
  // window starts at 2^(emax - 1) and the stride covers the rest.
  const int low = sat == Saturation::kSaturate ? emax - 1 : emin_sub - 2;
  const uint64_t win_lo = bits_of(std::ldexp(1.0f, low));
  const uint64_t win_hi = bits_of(std::ldexp(1.0f, emax + 2));
  constexpr uint64_t kStride = 97;
  auto dense = [&](uint64_t lo, uint64_t hi) { return check(lo, hi, 1); };
  auto strided = [&](uint64_t lo, uint64_t hi) { return check(lo, hi, kStride); };
  SweepResult r = parallel_sweep(win_lo, win_hi, dense);
  r.merge(parallel_sweep(0, win_lo, strided));
  r.merge(parallel_sweep(win_hi, 0x7F800000u, strided));
  r.merge(check(0x7F7FFFFFu, 0x7F800000u, 1));  // largest finite f32
  // Inf and every NaN, both signs.
  for (uint64_t i = 0x7F800000u; i < 0x80000000u; ++i) {
    const uint32_t a = static_cast<uint32_t>(i);
    for (uint32_t s : {0u, 0x80000000u}) {
      const uint32_t sign = s ? fmt.sign_bit : 0;
      uint32_t want;
      if (a == 0x7F800000u) {
        want = sign | over;  // Inf is overflow like any value past max
      } else {
        want = (fmt.nan_keeps_sign ? sign : 0) | fmt.nan_code;
      }
      const uint32_t got = fmt.encode(float_of(a | s), sat);
      if (got != want) r.record(a | s, got, want);
    }
  }
  return r;
}

const SweepFormat kSweepFormats[] = {
    {"e4m3fn", 4, 3, 7, 0x7E, 0x7F, 0x7F, 0x80, true, f32_to_e4m3fn, e4m3fn_to_f32},
    {"e5m2", 5, 2, 15, 0x7B, 0x7C, 0x7E, 0x80, true, f32_to_e5m2, e5m2_to_f32},
    {"e2m1", 2, 1, 1, 0x7, 0x7, 0x0, 0x8, false,
     [](float f, Saturation) { return f32_to_e2m1(f); }, e2m1_to_f32},
};

TEST(NarrowFloats, DenseF32SweepE4m3fn) {
  for (Saturation sat : {Saturation::kNonSaturating, Saturation::kSaturate}) {
    const SweepResult r = sweep_format(kSweepFormats[0], sat);
    EXPECT_EQ(r.bad, 0u) << "saturate=" << (sat == Saturation::kSaturate) << ": " << describe(r);
  }
}

TEST(NarrowFloats, DenseF32SweepE5m2) {
  for (Saturation sat : {Saturation::kNonSaturating, Saturation::kSaturate}) {
    const SweepResult r = sweep_format(kSweepFormats[1], sat);
    EXPECT_EQ(r.bad, 0u) << "saturate=" << (sat == Saturation::kSaturate) << ": " << describe(r);
  }
}

TEST(NarrowFloats, DenseF32SweepE2m1) {
  const SweepResult r = sweep_format(kSweepFormats[2], Saturation::kNonSaturating);
  EXPECT_EQ(r.bad, 0u) << describe(r);
}

// The sweep's value formula agrees with the oracle's decode table.
TEST(NarrowFloats, SweepValuesMatchDecode) {
  for (const auto& fmt : kSweepFormats) {
    for (uint32_t k = 0; k <= fmt.max_code; ++k) {
      const float got = fmt.decode(static_cast<uint8_t>(k));
      EXPECT_EQ(static_cast<double>(got), code_value(fmt, k)) << fmt.name << " code " << k;
    }
  }
}

// ---- bulk conversion ----

TEST(ConvertToF32, FloatTypes) {
  std::vector<float> out(8);
  const float f32s[] = {1.5f, -0.0f, 3.0e38f};
  convert_to_f32(DType::kF32, f32s, out.data(), 3);
  EXPECT_EQ(bits_of(out[0]), bits_of(1.5f));
  EXPECT_EQ(bits_of(out[1]), bits_of(-0.0f));
  EXPECT_EQ(out[2], 3.0e38f);

  const double f64s[] = {1.5, 1e300, -1e-300, 1.0 + std::ldexp(1.0, -30), -0.0};
  convert_to_f32(DType::kF64, f64s, out.data(), 5);
  EXPECT_EQ(out[0], 1.5f);
  EXPECT_TRUE(std::isinf(out[1]) && out[1] > 0);
  EXPECT_EQ(bits_of(out[2]), 0x80000000u);  // underflows to -0
  EXPECT_EQ(out[3], 1.0f);
  EXPECT_TRUE(std::signbit(out[4]));

  // Unaligned source, as in an mmapped file.
  unsigned char buf[1 + 3 * 2];
  const uint16_t halves[] = {0x3C00, 0xC000, 0x7C00};
  std::memcpy(buf + 1, halves, sizeof halves);
  convert_to_f32(DType::kF16, buf + 1, out.data(), 3);
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], -2.0f);
  EXPECT_TRUE(std::isinf(out[2]));
  const uint16_t bhalves[] = {0x3F80, 0xC040, 0x0001};
  std::memcpy(buf + 1, bhalves, sizeof bhalves);
  convert_to_f32(DType::kBF16, buf + 1, out.data(), 3);
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], -3.0f);
  EXPECT_EQ(bits_of(out[2]), 0x00010000u);
}

TEST(ConvertToF32, EightBitFloatsMatchScalar) {
  std::vector<uint8_t> codes(256);
  for (int i = 0; i < 256; ++i) codes[i] = static_cast<uint8_t>(i);
  std::vector<float> out(256);
  const std::pair<DType, float (*)(uint8_t)> types[] = {
      {DType::kF8E4M3, e4m3fn_to_f32}, {DType::kF8E5M2, e5m2_to_f32}, {DType::kE8M0, e8m0_to_f32}};
  for (const auto& [type, scalar] : types) {
    convert_to_f32(type, codes.data(), out.data(), 256);
    for (int i = 0; i < 256; ++i) {
      EXPECT_EQ(bits_of(out[i]), bits_of(scalar(codes[i]))) << dtype_name(type) << " " << i;
    }
  }
}

TEST(ConvertToF32, E2m1LowNibbleFirst) {
  // Codes: 1 = 0.5, 2 = 1.0, 7 = 6, F = -6, A = -1. Element 2k is the low nibble of
  // byte k (torch float4_e2m1fn_x2: val0 in bits 3..0, val1 in bits 7..4).
  const uint8_t packed[] = {0x21, 0xF7, 0x5A};
  std::vector<float> out(6, 99.0f);
  convert_to_f32(DType::kF4E2M1, packed, out.data(), 5);  // odd: last high nibble unused
  EXPECT_EQ(out[0], 0.5f);
  EXPECT_EQ(out[1], 1.0f);
  EXPECT_EQ(out[2], 6.0f);
  EXPECT_EQ(out[3], -6.0f);
  EXPECT_EQ(out[4], -1.0f);
  EXPECT_EQ(out[5], 99.0f);  // untouched
  // All 256 byte values.
  std::vector<uint8_t> all(256);
  for (int i = 0; i < 256; ++i) all[i] = static_cast<uint8_t>(i);
  std::vector<float> vals(512);
  convert_to_f32(DType::kF4E2M1, all.data(), vals.data(), 512);
  for (int i = 0; i < 256; ++i) {
    EXPECT_EQ(bits_of(vals[2 * i]), bits_of(e2m1_to_f32(static_cast<uint8_t>(i & 0xF))));
    EXPECT_EQ(bits_of(vals[2 * i + 1]), bits_of(e2m1_to_f32(static_cast<uint8_t>(i >> 4))));
  }
}

TEST(ConvertToF32, IntegersByValue) {
  std::vector<float> out(4);
  const int64_t i64[] = {std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(),
                         (int64_t{1} << 24) + 1, -1};
  convert_to_f32(DType::kI64, i64, out.data(), 4);
  EXPECT_EQ(out[0], -std::ldexp(1.0f, 63));
  EXPECT_EQ(out[1], std::ldexp(1.0f, 63));  // nearest float
  EXPECT_EQ(out[2], 16777216.0f);           // 2^24 + 1: tie to even
  EXPECT_EQ(out[3], -1.0f);
  const int32_t i32[] = {std::numeric_limits<int32_t>::min(), 123456789, -7};
  convert_to_f32(DType::kI32, i32, out.data(), 3);
  EXPECT_EQ(out[0], -2147483648.0f);
  EXPECT_EQ(out[1], 123456792.0f);
  EXPECT_EQ(out[2], -7.0f);
  const int16_t i16[] = {-32768, 32767, 0};
  convert_to_f32(DType::kI16, i16, out.data(), 3);
  EXPECT_EQ(out[0], -32768.0f);
  EXPECT_EQ(out[1], 32767.0f);
  EXPECT_EQ(out[2], 0.0f);
  const int8_t i8[] = {-128, 127, -1};
  convert_to_f32(DType::kI8, i8, out.data(), 3);
  EXPECT_EQ(out[0], -128.0f);
  EXPECT_EQ(out[1], 127.0f);
  EXPECT_EQ(out[2], -1.0f);
  const uint8_t u8[] = {255, 0, 128};
  convert_to_f32(DType::kU8, u8, out.data(), 3);
  EXPECT_EQ(out[0], 255.0f);
  EXPECT_EQ(out[1], 0.0f);
  EXPECT_EQ(out[2], 128.0f);
  const uint8_t b[] = {0, 1, 0, 1};
  convert_to_f32(DType::kBool, b, out.data(), 4);
  EXPECT_EQ(out, (std::vector<float>{0.0f, 1.0f, 0.0f, 1.0f}));
}

TEST(ConvertFromF32, FloatTypesMatchScalar) {
  std::vector<float> in;
  for (const auto& c : read_encode_cases("e4m3fn")) in.push_back(float_of(c.input));
  for (const auto& c : read_encode_cases("e5m2")) in.push_back(float_of(c.input));
  const size_t n = in.size();
  std::vector<float> f32(n);
  convert_from_f32(DType::kF32, in.data(), f32.data(), n);
  EXPECT_EQ(std::memcmp(f32.data(), in.data(), n * 4), 0);
  std::vector<uint16_t> h(n);
  convert_from_f32(DType::kF16, in.data(), h.data(), n);
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(h[i], f32_to_f16(in[i])) << i;
  convert_from_f32(DType::kBF16, in.data(), h.data(), n);
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(h[i], f32_to_bf16(in[i])) << i;
  constexpr auto kNonSat = Saturation::kNonSaturating;
  std::vector<uint8_t> b(n);
  convert_from_f32(DType::kF8E4M3, in.data(), b.data(), n);  // non-saturating
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(b[i], f32_to_e4m3fn(in[i], kNonSat)) << i;
  convert_from_f32(DType::kF8E5M2, in.data(), b.data(), n);
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(b[i], f32_to_e5m2(in[i], kNonSat)) << i;
  const float big[] = {1e5f, -1e6f};  // past both formats' max
  convert_from_f32(DType::kF8E4M3, big, b.data(), 2);
  EXPECT_EQ(b[0], 0x7F);
  EXPECT_EQ(b[1], 0xFF);
  convert_from_f32(DType::kF8E5M2, big, b.data(), 2);
  EXPECT_EQ(b[0], 0x7C);
  EXPECT_EQ(b[1], 0xFC);
}

TEST(ConvertFromF32, E2m1PacksLowNibbleFirst) {
  const float in[] = {0.5f, 1.0f, 6.0f, -6.0f, -1.0f};
  uint8_t out[4] = {0xEE, 0xEE, 0xEE, 0xEE};
  convert_from_f32(DType::kF4E2M1, in, out, 5);
  EXPECT_EQ(out[0], 0x21);
  EXPECT_EQ(out[1], 0xF7);
  EXPECT_EQ(out[2], 0x0A);  // odd tail: high nibble zero
  EXPECT_EQ(out[3], 0xEE);  // untouched
  // Round trip through both directions.
  std::vector<float> back(5);
  convert_to_f32(DType::kF4E2M1, out, back.data(), 5);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(back[i], in[i]);
}

TEST(ConvertFromF32, RejectsNonFloatTargets) {
  const float in[] = {1.0f};
  uint8_t out[8];
  for (DType t : {DType::kF64, DType::kE8M0, DType::kI64, DType::kI32, DType::kI16, DType::kI8,
                  DType::kU8, DType::kBool}) {
    EXPECT_THROW(convert_from_f32(t, in, out, 1), Error) << dtype_name(t);
  }
}

}  // namespace
}  // namespace quanta
