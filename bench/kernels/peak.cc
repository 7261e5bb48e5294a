// Arithmetic peak of this CPU for the instruction mixes quanta's kernels are made of,
// operands from L1 (as in a register-blocked GEMM), on 1 and on all threads:
//   f32 FMA            vfmadd231ps                      MAC = one multiply-add
//   int8 exact         vpsignb + vpmaddubsw + vpmaddwd(1) + vpaddd   (sign trick, int32 sums)
//   int8 -> int16      vpmaddubsw + vpaddw               (small operands: int4, W4A4)
//   int16              vpmaddwd + vpaddd                 (16-bit activations)
// These are upper bounds for any kernel built on each mix: the speed goals of the
// quantized schemes and of batched decoding are checked against them (bench/README.md).
//   build/bench_peak
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <thread>
#include <vector>

namespace {

constexpr int kBufBytes = 4096;  // operands stay in L1
constexpr int64_t kIters = 20'000'000;

alignas(64) uint8_t g_buf[kBufBytes];

// Each function runs kIters steps of 8 independent 256-bit chains and returns the
// multiply-adds done (for the mix it measures) so the caller divides by time.
__attribute__((target("avx2,fma"))) int64_t fma_f32(float* sink) {
  __m256 acc[8];
  for (auto& a : acc) a = _mm256_setzero_ps();
  const auto* p = reinterpret_cast<const float*>(g_buf);
  const __m256 b = _mm256_set1_ps(1.0001f);
  for (int64_t i = 0; i < kIters; ++i) {
    const float* q = p + (i & 15) * 64;
    for (int c = 0; c < 8; ++c) acc[c] = _mm256_fmadd_ps(_mm256_load_ps(q + c * 8), b, acc[c]);
  }
  __m256 s = acc[0];
  for (int c = 1; c < 8; ++c) s = _mm256_add_ps(s, acc[c]);
  _mm256_storeu_ps(sink, s);
  return kIters * 8 * 8;
}

__attribute__((target("avx2"))) int64_t int8_exact(float* sink) {
  __m256i acc[8];
  for (auto& a : acc) a = _mm256_setzero_si256();
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i x = _mm256_set1_epi8(37);
  for (int64_t i = 0; i < kIters; ++i) {
    const uint8_t* q = g_buf + (i & 15) * 256;
    for (int c = 0; c < 8; ++c) {
      const __m256i w = _mm256_load_si256(reinterpret_cast<const __m256i*>(q + c * 32));
      const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
      acc[c] = _mm256_add_epi32(acc[c], _mm256_madd_epi16(p, ones));
    }
  }
  __m256i s = acc[0];
  for (int c = 1; c < 8; ++c) s = _mm256_add_epi32(s, acc[c]);
  _mm256_storeu_ps(sink, _mm256_cvtepi32_ps(s));
  return kIters * 8 * 32;
}

__attribute__((target("avx2"))) int64_t int8_to_int16(float* sink) {
  __m256i acc[8];
  for (auto& a : acc) a = _mm256_setzero_si256();
  const __m256i x = _mm256_set1_epi8(3);
  for (int64_t i = 0; i < kIters; ++i) {
    const uint8_t* q = g_buf + (i & 15) * 256;
    for (int c = 0; c < 8; ++c) {
      const __m256i w = _mm256_load_si256(reinterpret_cast<const __m256i*>(q + c * 32));
      acc[c] = _mm256_add_epi16(acc[c], _mm256_maddubs_epi16(w, x));
    }
  }
  __m256i s = acc[0];
  for (int c = 1; c < 8; ++c) s = _mm256_add_epi16(s, acc[c]);
  _mm256_storeu_ps(sink, _mm256_cvtepi32_ps(s));
  return kIters * 8 * 32;
}

__attribute__((target("avx2"))) int64_t int16(float* sink) {
  __m256i acc[8];
  for (auto& a : acc) a = _mm256_setzero_si256();
  const __m256i x = _mm256_set1_epi16(1001);
  for (int64_t i = 0; i < kIters; ++i) {
    const uint8_t* q = g_buf + (i & 15) * 256;
    for (int c = 0; c < 8; ++c) {
      const __m256i w = _mm256_load_si256(reinterpret_cast<const __m256i*>(q + c * 32));
      acc[c] = _mm256_add_epi32(acc[c], _mm256_madd_epi16(w, x));
    }
  }
  __m256i s = acc[0];
  for (int c = 1; c < 8; ++c) s = _mm256_add_epi32(s, acc[c]);
  _mm256_storeu_ps(sink, _mm256_cvtepi32_ps(s));
  return kIters * 8 * 16;
}

double measure(int64_t (*fn)(float*), int threads) {
  std::vector<std::thread> pool;
  std::vector<int64_t> macs(static_cast<size_t>(threads));
  std::vector<float> sink(static_cast<size_t>(threads) * 8);
  const auto t0 = std::chrono::steady_clock::now();
  for (int t = 0; t < threads; ++t) pool.emplace_back([&, t] { macs[t] = fn(sink.data() + t * 8); });
  for (auto& th : pool) th.join();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  int64_t total = 0;
  for (int64_t m : macs) total += m;
  return static_cast<double>(total) / s * 1e-9;
}

}  // namespace

int main() {
  for (int i = 0; i < kBufBytes; ++i) g_buf[i] = static_cast<uint8_t>((i * 37 + 11) & 0x7F);
  const int all = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  struct Mix {
    const char* name;
    int64_t (*fn)(float*);
  } mixes[] = {{"f32 FMA", fma_f32}, {"int8 exact (sign+maddubs+madd)", int8_exact},
               {"int8->int16 (maddubs+addw)", int8_to_int16}, {"int16 (madd)", int16}};
  std::printf("%-34s %14s %14s  (GMAC/s; 1 MAC = 2 ops)\n", "mix", "1 thread", "threads");
  for (const auto& m : mixes) {
    measure(m.fn, 1);  // warm up the clock
    const double one = measure(m.fn, 1), many = measure(m.fn, all);
    std::printf("%-34s %14.1f %11.1f x%d\n", m.name, one, many, all);
  }
  return 0;
}
