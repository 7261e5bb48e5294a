// Throughput of the GGUF dot kernels (kernels/quant_dot.h), single thread, on the
// active tier (QUANTA_ISA lowers it): GB/s of weights for 1 and 4 tokens, over a
// Qwen3-1.7B MLP matrix (6144 x 2048, streamed from L3 / memory) and over 64 rows
// of it that stay in L2 (the kernel's arithmetic alone). Compare with bench_peak's
// read bandwidth: a decode kernel that is slower in L2 than memory is fast is
// bound by its arithmetic.
//   build/bench_quant_dot [--benchmark_filter=Q4_0]
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "quanta/format/ggml_types.h"
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
  const int group = quanta::kernels::quant_dot_act_group(t);
  const int64_t x_bytes = quanta::kernels::quant_act_bytes(group, n_in);
  std::vector<uint8_t> xq(static_cast<size_t>(x_bytes * n_tokens));
  for (int i = 0; i < n_tokens; ++i) quanta::kernels::quantize_act(group, x.data() + i * n_in, n_in, xq.data() + i * x_bytes);
  const auto dot = quanta::kernels::quant_dot(t);
  std::vector<float> out(static_cast<size_t>(n_tokens));
  for (auto _ : state) {
    for (int64_t o = 0; o < n_out; ++o) dot(n_in, w.data() + o * row_bytes, xq.data(), x_bytes, n_tokens, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["weight_GB/s"] = benchmark::Counter(static_cast<double>(w.size()), benchmark::Counter::kIsIterationInvariantRate,
                                                     benchmark::Counter::kIs1000);
}

void args(benchmark::internal::Benchmark* b) {
  for (int64_t rows : {64, 6144})
    for (int64_t tokens : {1, 4}) b->Args({rows, tokens});
}

BENCHMARK_CAPTURE(run, Q4_0, GgmlType::kQ4_0)->Apply(args);
BENCHMARK_CAPTURE(run, Q8_0, GgmlType::kQ8_0)->Apply(args);
BENCHMARK_CAPTURE(run, Q4_K, GgmlType::kQ4_K)->Apply(args);
BENCHMARK_CAPTURE(run, Q6_K, GgmlType::kQ6_K)->Apply(args);

}  // namespace

BENCHMARK_MAIN();
