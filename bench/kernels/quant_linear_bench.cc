// Throughput of the integer Linear kernels (kernels/quant_linear.h) on Qwen3-1.7B
// shapes, single thread: GMAC/s for prompt shapes (compare with build/bench_peak's
// int8 rows) and GB/s of weights streamed for one token.
//   build/bench_quant_linear [--benchmark_filter=...]
#include <benchmark/benchmark.h>

#include <algorithm>
#include <random>
#include <vector>

#include "quanta/core/thread_pool.h"
#include "quanta/kernels/group_int.h"
#include "quanta/kernels/quant_linear.h"
#include "quanta/quant/group_int_linear.h"

namespace {

using quanta::kernels::GemmS8Args;

// gemm_s8 (W8A8: int8 x int8 -> int32) or gemm_u4 (W4A4: packed int4 x int4).
void run(benchmark::State& state, bool int4) {
  const int64_t n_tokens = state.range(0), n_in = state.range(1), n_out = state.range(2);
  std::mt19937 rng(1);
  std::uniform_int_distribution<int> q(int4 ? -7 : -127, int4 ? 7 : 127);
  std::vector<int8_t> x(static_cast<size_t>(n_tokens * n_in)), w(static_cast<size_t>(n_out * n_in));
  for (auto& v : x) v = static_cast<int8_t>(q(rng));
  for (auto& v : w) v = static_cast<int8_t>(int4 ? std::clamp(q(rng), -8, 7) : q(rng));
  std::vector<uint8_t> packed;
  if (int4) {
    packed.resize(static_cast<size_t>(n_out * n_in / 2));
    for (int64_t n = 0; n < n_out; ++n) quanta::kernels::pack_u4(w.data() + n * n_in, n_in, packed.data() + n * n_in / 2);
  }
  std::vector<int32_t> out(static_cast<size_t>(n_tokens * n_out));
  const auto& kt = quanta::kernels::quant_linear_kernels();
  const int8_t* wp = int4 ? reinterpret_cast<const int8_t*>(packed.data()) : w.data();
  const int64_t ldw = int4 ? n_in / 2 : n_in;
  for (auto _ : state) {
    (int4 ? kt.gemm_u4 : kt.gemm_s8)(GemmS8Args{x.data(), n_in, n_tokens, wp, ldw, n_in, 0, n_out, out.data(), n_out});
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["GMAC/s"] = benchmark::Counter(static_cast<double>(n_tokens * n_in * n_out), benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
  state.counters["weight_GB/s"] = benchmark::Counter(static_cast<double>(n_out * ldw), benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

// gemm_f32_mxfp8 (W8A8_MXFP8 with f32 activations): E4M3 codes (no NaN), E8M0 scales near 2^0.
void BM_gemm_mxfp8(benchmark::State& state) {
  const int64_t n_tokens = state.range(0), n_in = state.range(1), n_out = state.range(2);
  std::mt19937 rng(2);
  std::uniform_int_distribution<int> code(0, 0x7E), scale(120, 134);
  std::normal_distribution<float> nd;
  std::vector<uint8_t> w(static_cast<size_t>(n_out * n_in)), ws(static_cast<size_t>(n_out * n_in / 32));
  for (auto& v : w) v = static_cast<uint8_t>(code(rng) | (rng() & 0x80));
  for (auto& v : ws) v = static_cast<uint8_t>(scale(rng));
  std::vector<float> x(static_cast<size_t>(n_tokens * n_in)), y(static_cast<size_t>(n_tokens * n_out));
  for (auto& v : x) v = nd(rng);
  const auto& kt = quanta::kernels::quant_linear_kernels();
  for (auto _ : state) {
    kt.gemm_f32_mxfp8({x.data(), nullptr, nullptr, n_tokens, n_in, w.data(), ws.data(), 0, n_out, y.data(), n_out});
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GMAC/s"] = benchmark::Counter(static_cast<double>(n_tokens * n_in * n_out), benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
  state.counters["weight_GB/s"] = benchmark::Counter(static_cast<double>(n_out * n_in), benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

// A whole group-wise int4 Linear (AWQ / GPTQ W4A16 g128 after repacking) on one
// thread, activations quantized inside: the avx512 tier's integer GEMM against the
// avx2 tier's decoded f32 tiles (range 3: the tier, quanta::kernels::Isa); one token:
// both tiers' dot kernels (weights 7 MB: from L3 / memory).
void BM_group_int4(benchmark::State& state) {
  const int64_t n_tokens = state.range(0), n_in = state.range(1), n_out = state.range(2), group = 128;
  const auto isa = static_cast<quanta::kernels::Isa>(state.range(3));
  if (isa > quanta::kernels::host_isa()) return state.SkipWithError("tier not on this host");
  std::mt19937 rng(3);
  quanta::quant::GroupIntWeights w;
  w.n_out = n_out;
  w.n_in = n_in;
  w.bits = 4;
  w.group_size = group;
  w.q.resize(static_cast<size_t>(n_out * n_in));
  for (auto& v : w.q) v = static_cast<uint8_t>(rng() & 15);
  for (int64_t i = 0; i < n_out * n_in / group; ++i) {
    w.scale.push_back(0.01f);
    w.zero.push_back(static_cast<int32_t>(rng() & 15));
  }
  auto lin = quanta::quant::make_group_int_linear(std::move(w), "bench", quanta::kernels::group_int_kernels_for(isa));
  std::normal_distribution<float> nd;
  std::vector<float> x(static_cast<size_t>(n_tokens * n_in)), y(static_cast<size_t>(n_tokens * n_out));
  for (auto& v : x) v = nd(rng);
  quanta::ThreadPool pool(1);
  for (auto _ : state) {
    lin->forward(x.data(), n_tokens, y.data(), pool);
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GMAC/s"] = benchmark::Counter(static_cast<double>(n_tokens * n_in * n_out), benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
  state.counters["weight_GB/s"] = benchmark::Counter(static_cast<double>(lin->weight_bytes()), benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

void BM_gemm_s8(benchmark::State& s) { run(s, false); }
void BM_gemm_u4(benchmark::State& s) { run(s, true); }

// Qwen3-1.7B MLP up projection [6144, 2048]: one token (decode), 512 (prompt).
BENCHMARK(BM_gemm_s8)->Args({1, 2048, 6144})->Args({512, 2048, 6144})->Unit(benchmark::kMillisecond);
BENCHMARK(BM_gemm_mxfp8)->Args({1, 2048, 6144})->Args({512, 2048, 6144})->Unit(benchmark::kMillisecond);
BENCHMARK(BM_gemm_u4)->Args({1, 2048, 6144})->Args({512, 2048, 6144})->Unit(benchmark::kMillisecond);
BENCHMARK(BM_group_int4)->Args({1, 2048, 6144, 1})->Args({1, 2048, 6144, 2})->Args({512, 2048, 6144, 1})->Args({512, 2048, 6144, 2})->Args({512, 6144, 2048, 2})
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
