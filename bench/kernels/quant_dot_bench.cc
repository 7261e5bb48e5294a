// Throughput of the GGUF dot kernels (kernels/quant_dot.h), single thread, on the
// active tier (QUANTA_ISA lowers it): GB/s of weights for 1 and 4 tokens, over a
// Qwen3-1.7B MLP matrix (6144 x 2048, streamed from L3 / memory) and over 64 rows
// of it that stay in L2 (the kernel's arithmetic alone). Compare with bench_peak's
// read bandwidth: a decode kernel that is slower in L2 than memory is fast is
// bound by its arithmetic.
// `prompt`: 512 tokens through 1536 x 2048 rows, one thread, GMAC/s, the two
// prompt paths on the active tier: 0 = rows decoded to f32 tiles for the f32
// matmul (AVX2 and below), 1 = the integer panel GEMM (AVX-512; compare with
// bench_peak's vpdpwssd row).
//   build/bench_quant_dot [--benchmark_filter=Q4_0]
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "quanta/format/ggml_types.h"
#include "quanta/kernels/kernels.h"
#include "quanta/kernels/quant_dot.h"

namespace {

using quanta::format::GgmlType;

void run(benchmark::State& state, GgmlType type) {
  const int64_t n_out = state.range(0), n_in = 2048;
  const int n_tokens = static_cast<int>(state.range(1));
  const auto& info = quanta::format::ggml_type_info(type);
  const int64_t row_bytes = n_in / info.block_size * info.type_size;
  // Random bytes: the kernels' speed does not depend on the values.
  std::mt19937 rng(1);
  std::vector<uint8_t> w(static_cast<size_t>(n_out * row_bytes));
  for (auto& b : w) b = static_cast<uint8_t>(rng());
  std::vector<float> x(static_cast<size_t>(n_in * n_tokens));
  std::normal_distribution<float> normal;
  for (auto& v : x) v = normal(rng);
  const uint32_t t = static_cast<uint32_t>(type);
  const auto kernel = quanta::kernels::quant_dot(t, n_tokens);
  const auto layout = kernel.layout;
  const int64_t x_bytes = quanta::kernels::quant_act_bytes(layout, n_in);
  std::vector<uint8_t> xq(static_cast<size_t>(x_bytes * n_tokens));
  for (int i = 0; i < n_tokens; ++i) quanta::kernels::quantize_act(layout, x.data() + i * n_in, n_in, xq.data() + i * x_bytes);
  const auto dot = kernel.fn;
  std::vector<float> out(static_cast<size_t>(n_tokens));
  for (auto _ : state) {
    for (int64_t o = 0; o < n_out; ++o) dot(n_in, w.data() + o * row_bytes, xq.data(), x_bytes, n_tokens, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["weight_GB/s"] = benchmark::Counter(static_cast<double>(w.size()), benchmark::Counter::kIsIterationInvariantRate,
                                                     benchmark::Counter::kIs1000);
}

void prompt(benchmark::State& state, GgmlType type) {
  const int64_t n_out = 1536, n_in = 2048, n_tokens = 512;
  const bool integer = state.range(0) == 1;
  const uint32_t t = static_cast<uint32_t>(type);
  const auto gemm = quanta::kernels::quant_gemm(t);
  if (integer && !gemm) return state.SkipWithError("no integer GEMM on this tier");
  const auto& info = quanta::format::ggml_type_info(type);
  const int64_t row_bytes = n_in / info.block_size * info.type_size;
  std::mt19937 rng(2);
  std::vector<uint8_t> w(static_cast<size_t>(n_out * row_bytes));
  for (auto& b : w) b = static_cast<uint8_t>(rng());
  std::vector<float> x(static_cast<size_t>(n_in * n_tokens)), y(static_cast<size_t>(n_out * n_tokens));
  std::normal_distribution<float> normal;
  for (auto& v : x) v = normal(rng);
  const int64_t x_bytes = quanta::kernels::quant_act_bytes(quanta::kernels::ActLayout::kQ16, n_in);
  std::vector<uint8_t> xq(static_cast<size_t>(x_bytes * n_tokens));
  // As quant/gguf.cc does it, activation quantization included.
  constexpr int64_t kTileRows = 12;  // gguf.cc's 96 KB f32 tile at 2048 inputs
  std::vector<float> tile(static_cast<size_t>(kTileRows * n_in));
  const auto dequant = quanta::kernels::quant_dequant(t);
  const auto matmul = quanta::kernels::kernels().matmul_f32;
  for (auto _ : state) {
    if (integer) {
      for (int64_t i = 0; i < n_tokens; ++i) quanta::kernels::quantize_act(quanta::kernels::ActLayout::kQ16, x.data() + i * n_in, n_in, xq.data() + i * x_bytes);
      for (int64_t o = 0; o < n_out; o += quanta::kernels::quant_gemm_rows)
        gemm(n_in, w.data() + o * row_bytes, row_bytes, quanta::kernels::quant_gemm_rows, xq.data(), x_bytes, n_tokens,
             y.data() + o, n_out);
    } else {
      for (int64_t o = 0; o < n_out; o += kTileRows) {
        for (int64_t r = 0; r < kTileRows; ++r) dequant(w.data() + (o + r) * row_bytes, tile.data() + r * n_in, n_in);
        matmul({x.data(), n_tokens, n_in, tile.data(), y.data() + o, n_out, 0, kTileRows});
      }
    }
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GMAC/s"] = benchmark::Counter(static_cast<double>(n_out * n_in * n_tokens), benchmark::Counter::kIsIterationInvariantRate,
                                                benchmark::Counter::kIs1000);
}

void args(benchmark::internal::Benchmark* b) {
  for (int64_t rows : {64, 6144})
    for (int64_t tokens : {1, 4}) b->Args({rows, tokens});
}

BENCHMARK_CAPTURE(run, Q4_0, GgmlType::kQ4_0)->Apply(args);
BENCHMARK_CAPTURE(run, Q8_0, GgmlType::kQ8_0)->Apply(args);
BENCHMARK_CAPTURE(run, Q4_K, GgmlType::kQ4_K)->Apply(args);
BENCHMARK_CAPTURE(run, Q5_K, GgmlType::kQ5_K)->Apply(args);
BENCHMARK_CAPTURE(run, Q6_K, GgmlType::kQ6_K)->Apply(args);
BENCHMARK_CAPTURE(prompt, Q4_0, GgmlType::kQ4_0)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(prompt, Q8_0, GgmlType::kQ8_0)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(prompt, Q4_K, GgmlType::kQ4_K)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(prompt, Q6_K, GgmlType::kQ6_K)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
