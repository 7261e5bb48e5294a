// Arithmetic peak of this CPU for the instruction mixes quanta's kernels are made of,
// operands from L1 (as in a register-blocked GEMM), on 1 and on all threads:
//   f32 FMA            vfmadd231ps                      MAC = one multiply-add
//   int8 exact         vpsignb + vpmaddubsw + vpmaddwd(1) + vpaddd   (sign trick, int32 sums)
//   int8 -> int16      vpmaddubsw + vpaddw               (small operands: int4, W4A4)
//   int16              vpmaddwd + vpaddd                 (16-bit activations)
// and, where the CPU has them (AVX-512 VNNI/BF16, AMX):
//   f32 FMA 512        vfmadd231ps zmm
//   int16 VNNI 512     vpdpwssd zmm                      (16-bit activation dot products)
//   int8 VNNI 512      vpdpbusd zmm                      (u8 x s8)
//   bf16 dot 512       vdpbf16ps zmm
//   AMX int8           tdpbssd, 16x16x64 per instruction
//   AMX bf16           tdpbf16ps, 16x16x32 per instruction
// plus the read bandwidth of a 1 GB buffer (what bounds decoding).
// These are upper bounds for any kernel built on each mix: the speed goals of the
// quantized schemes and of batched decoding are checked against them (bench/README.md).
//   build/bench_peak
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <thread>
#include <vector>

#include "quanta/kernels/kernels.h"

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

__attribute__((target("avx512f"))) int64_t fma_f32_512(float* sink) {
  __m512 acc[8];
  for (auto& a : acc) a = _mm512_setzero_ps();
  const auto* p = reinterpret_cast<const float*>(g_buf);
  const __m512 b = _mm512_set1_ps(1.0001f);
  for (int64_t i = 0; i < kIters; ++i) {
    const float* q = p + (i & 7) * 128;
    for (int c = 0; c < 8; ++c) acc[c] = _mm512_fmadd_ps(_mm512_load_ps(q + c * 16), b, acc[c]);
  }
  __m512 s = acc[0];
  for (int c = 1; c < 8; ++c) s = _mm512_add_ps(s, acc[c]);
  *sink = _mm512_reduce_add_ps(s);
  return kIters * 8 * 16;
}

// vpdpwssd (16-bit pairs) or vpdpbusd (8-bit quads) into 16 int32 lanes.
template <bool kInt8>
__attribute__((target("avx512f,avx512bw,avx512vnni"))) int64_t vnni_512(float* sink) {
  __m512i acc[8];
  for (auto& a : acc) a = _mm512_setzero_si512();
  const __m512i x = _mm512_set1_epi16(3);
  for (int64_t i = 0; i < kIters; ++i) {
    const uint8_t* q = g_buf + (i & 7) * 512;
    for (int c = 0; c < 8; ++c) {
      const __m512i w = _mm512_load_si512(q + c * 64);
      acc[c] = kInt8 ? _mm512_dpbusd_epi32(acc[c], x, w) : _mm512_dpwssd_epi32(acc[c], x, w);
    }
  }
  __m512i s = acc[0];
  for (int c = 1; c < 8; ++c) s = _mm512_add_epi32(s, acc[c]);
  *sink = static_cast<float>(_mm512_reduce_add_epi32(s));
  return kIters * 8 * (kInt8 ? 64 : 32);
}

__attribute__((target("avx512f,avx512bf16"))) int64_t bf16_512(float* sink) {
  __m512 acc[8];
  for (auto& a : acc) a = _mm512_setzero_ps();
  const __m512bh x = reinterpret_cast<__m512bh>(_mm512_set1_epi16(0x3F80));
  for (int64_t i = 0; i < kIters; ++i) {
    const uint8_t* q = g_buf + (i & 7) * 512;
    for (int c = 0; c < 8; ++c)
      acc[c] = _mm512_dpbf16_ps(acc[c], x, reinterpret_cast<__m512bh>(_mm512_load_si512(q + c * 64)));
  }
  __m512 s = acc[0];
  for (int c = 1; c < 8; ++c) s = _mm512_add_ps(s, acc[c]);
  *sink = _mm512_reduce_add_ps(s);
  return kIters * 8 * 32;
}

// Four independent accumulator tiles, as in a 2 x 2 blocked tile GEMM, operands
// reloaded from L1 each step.
struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0, reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};
template <bool kInt8>
__attribute__((target("amx-tile,amx-int8,amx-bf16"))) int64_t amx(float* sink) {
  TileConfig cfg;
  for (int i = 0; i < 8; ++i) cfg.colsb[i] = 64, cfg.rows[i] = 16;
  __asm__ volatile("ldtilecfg %0" : : "m"(cfg) : "memory");
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  const int64_t iters = kIters / 16;
  for (int64_t i = 0; i < iters; ++i) {
    _tile_loadd(4, g_buf, 64);
    _tile_loadd(5, g_buf + 1024, 64);
    _tile_loadd(6, g_buf + 2048, 64);
    _tile_loadd(7, g_buf + 3072, 64);
    if constexpr (kInt8) {
      _tile_dpbssd(0, 4, 6);
      _tile_dpbssd(1, 4, 7);
      _tile_dpbssd(2, 5, 6);
      _tile_dpbssd(3, 5, 7);
    } else {
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(1, 4, 7);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
    }
  }
  alignas(64) int32_t out[256];
  _tile_stored(0, out, 64);
  _tile_release();
  *sink = static_cast<float>(out[0]);
  return iters * 4 * 16 * 16 * (kInt8 ? 64 : 32);
}

// Bytes read per second over a 1 GB buffer, each thread its own slice (reported
// in the GMAC/s column as GB/s).
std::vector<uint8_t> g_big;
int g_threads = 1;
__attribute__((target("avx2"))) int64_t read_bw(float* sink) {
  static std::atomic<int> next{0};
  const int64_t slice = static_cast<int64_t>(g_big.size()) / g_threads;
  const int me = next.fetch_add(1) % g_threads;
  const uint8_t* p = g_big.data() + me * slice;
  __m256i acc = _mm256_setzero_si256();
  int64_t bytes = 0;
  for (int rep = 0; rep < 4; ++rep, bytes += slice)
    for (int64_t i = 0; i < slice; i += 128) {
      acc = _mm256_xor_si256(acc, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i)));
      acc = _mm256_xor_si256(acc, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
      acc = _mm256_xor_si256(acc, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 64)));
      acc = _mm256_xor_si256(acc, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 96)));
    }
  *sink = static_cast<float>(_mm256_extract_epi32(acc, 0));
  return bytes;
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
  const auto& f = quanta::kernels::cpu_features();  // also asks Linux for AMX tile data
  std::printf("CPU features: %s\n", quanta::kernels::cpu_features_string().c_str());
  const bool avx512 = f.avx512f && f.avx512bw, vnni = avx512 && f.avx512_vnni, bf16 = avx512 && f.avx512_bf16;
  const bool amx_int8 = f.amx_tile && f.amx_int8 && f.amx_permitted, amx_bf16 = f.amx_tile && f.amx_bf16 && f.amx_permitted;
  struct Mix {
    const char* name;
    int64_t (*fn)(float*);
    bool available;
  } mixes[] = {{"f32 FMA", fma_f32, f.avx2 && f.fma},
               {"int8 exact (sign+maddubs+madd)", int8_exact, f.avx2},
               {"int8->int16 (maddubs+addw)", int8_to_int16, f.avx2},
               {"int16 (madd)", int16, f.avx2},
               {"f32 FMA 512", fma_f32_512, avx512},
               {"int16 VNNI 512 (vpdpwssd)", vnni_512<false>, vnni},
               {"int8 VNNI 512 (vpdpbusd)", vnni_512<true>, vnni},
               {"bf16 512 (vdpbf16ps)", bf16_512, bf16},
               {"AMX int8 (tdpbssd)", amx<true>, amx_int8},
               {"AMX bf16 (tdpbf16ps)", amx<false>, amx_bf16}};
  std::printf("%-34s %14s %14s  (GMAC/s; 1 MAC = 2 ops)\n", "mix", "1 thread", "threads");
  for (const auto& m : mixes) {
    if (!m.available) {
      std::printf("%-34s %14s\n", m.name, "(not on this CPU)");
      continue;
    }
    measure(m.fn, 1);  // warm up the clock
    const double one = measure(m.fn, 1), many = measure(m.fn, all);
    std::printf("%-34s %14.1f %11.1f x%d\n", m.name, one, many, all);
  }
  g_big.assign(size_t{1} << 30, 1);
  g_threads = 1;
  const double bw1 = measure(read_bw, 1);
  g_threads = all;
  const double bwn = measure(read_bw, all);
  std::printf("%-34s %14.1f %11.1f x%d  (GB/s)\n", "read bandwidth (1 GB)", bw1, bwn, all);
  return 0;
}
