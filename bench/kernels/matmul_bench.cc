// Throughput of the dense matmul kernels on real-model shapes, single thread.
// Prints GFLOP/s (prefill shapes) and GB/s of weights streamed (decode shapes).
//   build/bench_matmul [--benchmark_filter=...]
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "quanta/core/dtype.h"
#ifdef QUANTA_BENCH_OPENBLAS
#include <cblas.h>
#endif
#include "quanta/kernels/kernels.h"
#include "quanta/kernels/tile_gemm.h"

namespace {

using quanta::kernels::MatmulArgs;

void run(benchmark::State& state, bool bf16) {
  const int64_t n_tokens = state.range(0), n_in = state.range(1), n_out = state.range(2);
  std::mt19937 rng(1);
  std::normal_distribution<float> d(0, 1);
  std::vector<float> x(static_cast<size_t>(n_tokens * n_in)), wf(static_cast<size_t>(n_out * n_in));
  for (auto& v : x) v = d(rng);
  for (auto& v : wf) v = d(rng);
  std::vector<uint16_t> wb(wf.size());
  for (size_t i = 0; i < wf.size(); ++i) wb[i] = quanta::f32_to_bf16(wf[i]);
  std::vector<float> y(static_cast<size_t>(n_tokens * n_out));
  const auto& kt = quanta::kernels::kernels();
  auto fn = bf16 ? kt.matmul_bf16 : kt.matmul_f32;
  const void* w = bf16 ? static_cast<const void*>(wb.data()) : wf.data();
  for (auto _ : state) {
    fn(MatmulArgs{x.data(), n_tokens, n_in, w, y.data(), n_out, 0, n_out});
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * n_tokens * n_in * n_out, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
  state.counters["weight_GB/s"] = benchmark::Counter(static_cast<double>(n_in * n_out * (bf16 ? 2 : 4)), benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

void BM_matmul_bf16(benchmark::State& s) { run(s, true); }
void BM_matmul_f32(benchmark::State& s) { run(s, false); }

#ifdef QUANTA_BENCH_OPENBLAS
// The same product with OpenBLAS sgemm (f32 weights only: OpenBLAS has no
// bf16-weight x f32-activation product), single-threaded like the others.
void BM_openblas_sgemm(benchmark::State& state) {
  const int n_tokens = static_cast<int>(state.range(0)), n_in = static_cast<int>(state.range(1)),
            n_out = static_cast<int>(state.range(2));
  openblas_set_num_threads(1);
  std::vector<float> x(static_cast<size_t>(n_tokens) * n_in, 0.5f), w(static_cast<size_t>(n_out) * n_in, 0.25f),
      y(static_cast<size_t>(n_tokens) * n_out);
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n_tokens, n_out, n_in, 1.0f, x.data(), n_in, w.data(),
                n_in, 0.0f, y.data(), n_out);
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * n_tokens * n_in * n_out, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
  state.counters["weight_GB/s"] = benchmark::Counter(4.0 * n_in * n_out, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}
BENCHMARK(BM_openblas_sgemm)->Args({1, 1024, 3072})->Args({512, 1024, 3072})->Unit(benchmark::kMillisecond);
#endif

// AMX tile GEMMs (tile_gemm.h): range(3) = 1, 2, 3 bf16 terms, or 0 for int8.
// GMAC/s counts the model's multiply-adds (not the extra terms): compare with
// bench_peak's AMX rows times the terms.
void BM_tile_gemm(benchmark::State& state) {
  namespace k = quanta::kernels;
  if (!k::tiles_usable(k::active_isa())) {
    state.SkipWithError("no AMX");
    return;
  }
  const int64_t n_tokens = state.range(0), n_in = state.range(1), n_out = state.range(2);
  const int terms = static_cast<int>(state.range(3));
  std::vector<float> x(static_cast<size_t>(n_tokens * n_in), 0.5f), y(static_cast<size_t>(n_tokens * n_out));
  std::vector<uint8_t> w(static_cast<size_t>(2 * n_out * n_in * 2), 1), xp;
  std::vector<int8_t> xq(x.size(), 3);
  for (auto _ : state) {
    if (terms == 0) {
      xp.assign(static_cast<size_t>(k::tile_packed_bytes(n_tokens, n_in, 1)), 0);
      k::tile_pack_s8(xq.data(), n_in, n_tokens, n_in, 0, (n_tokens + 15) / 16, xp.data());
      k::tile_gemm_s8({xp.data(), n_tokens, n_in, w.data(), n_in, 0, n_out, y.data(), n_out});
    } else {
      xp.assign(static_cast<size_t>(k::tile_packed_bytes(n_tokens, n_in, 2) * (terms > 1 ? 2 : 1)), 0);
      k::tile_pack_bf16(x.data(), n_in, n_tokens, n_in, terms > 1, 0, (n_tokens + 15) / 16, xp.data());
      k::TileGemmArgs a{xp.data(), n_tokens, n_in, w.data(), 2 * n_in, 0, n_out, y.data(), n_out};
      if (terms == 2) a = k::tile_terms_w_xsplit(a);
      if (terms == 3) a = k::tile_terms_wsplit_xsplit(a, 2 * n_out * n_in);
      k::tile_gemm_bf16(a);
    }
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GMAC/s"] = benchmark::Counter(1.0 * n_tokens * n_in * n_out, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}
// Qwen3-1.7B MLP [6144, 2048] and the default model's [2048, 640] at 512 tokens.
BENCHMARK(BM_tile_gemm)
    ->Args({512, 2048, 6144, 0})->Args({512, 2048, 6144, 1})->Args({512, 2048, 6144, 2})->Args({512, 2048, 6144, 3})
    ->Args({512, 2016, 6144, 1})->Args({512, 2016, 6144, 0})->Args({32, 512, 32, 1})->Args({32, 512, 32, 0})->Args({32, 512, 64, 3})
    ->Args({512, 640, 2048, 2})->Args({512, 640, 2048, 3})->Args({16, 640, 2048, 3})->Unit(benchmark::kMillisecond);

// Qwen3-0.6B shapes: gate/up [3072, 1024]; decode (1 token) and prefill (512 tokens).
BENCHMARK(BM_matmul_bf16)->Args({1, 1024, 3072})->Args({512, 1024, 3072})->Args({64, 1024, 3072})->Unit(benchmark::kMillisecond);
BENCHMARK(BM_matmul_f32)->Args({1, 1024, 3072})->Args({512, 1024, 3072})->Args({1, 640, 65536})->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
