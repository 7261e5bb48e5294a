// oneDNN (Debian's libdnnl) matmul on the shapes the tile GEMMs run, for the
// library-or-own-kernels decision of the AMX tier: int8 x int8 -> int32 and
// bf16 x bf16 -> f32, weights reordered once into the layout oneDNN picks
// (format any, as a load-time repack would), activations as they come,
// 1 thread (ONEDNN's own threading is OpenMP: run with OMP_NUM_THREADS=1, or 2).
// Compare with build/bench_matmul --benchmark_filter=tile (its terms=1 and int8 rows).
//   OMP_NUM_THREADS=1 build/bench_onednn
#include <chrono>
#include <cstdio>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"

namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

double run(dnnl::engine& eng, dnnl::stream& st, int64_t m, int64_t k, int64_t n, dt a_t, dt w_t, dt c_t) {
  const dnnl::memory::desc a_md({m, k}, a_t, tag::ab), w_any({k, n}, w_t, tag::any), c_md({m, n}, c_t, tag::ab);
  const dnnl::memory::desc w_plain({k, n}, w_t, tag::ba);  // [n, k] row-major: a PyTorch Linear weight
  dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, w_any, c_md), eng);  // oneDNN 2.x API
  dnnl::memory a(a_md, eng), w_src(w_plain, eng), w(pd.weights_desc(), eng), c(c_md, eng);
  std::fill_n(static_cast<uint8_t*>(a.get_data_handle()), a_md.get_size(), uint8_t{1});
  std::fill_n(static_cast<uint8_t*>(w_src.get_data_handle()), w_plain.get_size(), uint8_t{1});
  dnnl::reorder(w_src, w).execute(st, w_src, w);
  dnnl::matmul mm(pd);
  auto once = [&] {
    mm.execute(st, {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DST, c}});
    st.wait();
  };
  once();
  int reps = 0;
  const auto t0 = std::chrono::steady_clock::now();
  double s = 0;
  while (s < 1.0) {
    once();
    ++reps;
    s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  std::printf("impl %s\n", pd.impl_info_str());
  return static_cast<double>(m) * k * n * reps / s * 1e-9;
}

}  // namespace

int main() {
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream st(eng);
  struct Shape {
    int64_t m, k, n;
  } shapes[] = {{512, 2048, 6144}, {512, 640, 2048}, {16, 640, 2048}};
  for (Shape s : shapes) {
    const double i8 = run(eng, st, s.m, s.k, s.n, dt::s8, dt::s8, dt::s32);
    const double b16 = run(eng, st, s.m, s.k, s.n, dt::bf16, dt::bf16, dt::f32);
    std::printf("M=%lld K=%lld N=%lld: int8 %.1f GMAC/s, bf16 %.1f GMAC/s\n", static_cast<long long>(s.m),
                static_cast<long long>(s.k), static_cast<long long>(s.n), i8, b16);
  }
  return 0;
}
