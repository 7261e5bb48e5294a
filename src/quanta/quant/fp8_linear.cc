#include "quanta/quant/fp8_linear.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>

#include "quanta/core/dtype.h"
#include "quanta/core/thread_pool.h"
#include "quanta/kernels/kernels.h"
#include "quanta/kernels/tile_gemm.h"
#include "quanta/quant/quantized_linear.h"

namespace quanta::quant {

void fp8_fake_quantize(const float* x, int64_t n, float s, float* out) {
  for (int64_t k = 0; k < n; ++k) {
    const float v = s > 0.0f ? std::clamp(x[k] / s, -448.0f, 448.0f) : 0.0f;
    out[k] = e4m3fn_to_f32(f32_to_e4m3fn(v)) * s;
  }
}

namespace {

constexpr int64_t kTileBytes = 96 * 1024;

const std::array<float, 256>& e4m3_table() {
  static const std::array<float, 256> t = [] {
    std::array<float, 256> v{};
    for (int i = 0; i < 256; ++i) v[i] = e4m3fn_to_f32(static_cast<uint8_t>(i));
    return v;
  }();
  return t;
}

class Fp8Linear : public LinearKernel {
 public:
  explicit Fp8Linear(Fp8LinearWeights w) : w_(std::move(w)), n_out_(w_.weight.dim(0)), n_in_(w_.weight.dim(1)) {}

  void forward(const float* x, int64_t n_tokens, float* y, ThreadPool& pool) const override {
    const int64_t K = n_in_, N = n_out_;
    std::vector<float> xa;
    if (w_.act != Fp8Act::kNone) {
      xa.resize(static_cast<size_t>(n_tokens * K));
      const int64_t span = w_.act == Fp8Act::kGroup ? w_.act_group : K;
      // Per-token scales of a row-parallel shard: the whole row's max, combined first.
      std::vector<float> token_amax;
      if (w_.act == Fp8Act::kToken && w_.reduce_max) {
        token_amax.resize(static_cast<size_t>(n_tokens));
        for (int64_t t = 0; t < n_tokens; ++t) token_amax[t] = abs_max(x + t * K, K);
        w_.reduce_max(token_amax.data(), n_tokens);
      }
      for (int64_t t = 0; t < n_tokens; ++t)
        for (int64_t k0 = 0; k0 < K; k0 += span) {
          const int64_t len = std::min(span, K - k0);
          const float* row = x + t * K + k0;
          float s = w_.input_scale;
          if (w_.act != Fp8Act::kStatic) s = (token_amax.empty() ? abs_max(row, len) : token_amax[t]) / 448.0f;
          fp8_fake_quantize(row, len, s, xa.data() + t * K + k0);
        }
      x = xa.data();
    }
    const kernels::Isa isa = kernels::active_isa();
    if (kernels::tiles_usable(isa) && n_tokens >= kernels::kTileMinTokens) {
      kernels::tile_gemm_decoded(
          x, n_tokens, K, N, true, true,
          [&](int64_t n, int64_t rows, int64_t k0, int64_t len, float* out) { decode(n, rows, k0, len, out); }, y,
          pool);
    } else {
      const auto matmul = kernels::kernels_for(isa).matmul_f32;
      const int64_t tile_rows = std::max<int64_t>(4, kTileBytes / (4 * K) / 4 * 4);
      pool.parallel_for(N, tile_rows, [&](int64_t begin, int64_t end) {
        thread_local std::vector<float> tile;
        tile.resize(static_cast<size_t>(tile_rows * K));
        for (int64_t o = begin; o < end; o += tile_rows) {
          const int64_t rows = std::min(tile_rows, end - o);
          decode(o, rows, 0, K, tile.data());
          matmul({x, n_tokens, K, tile.data(), y + o, N, 0, rows});
        }
      });
    }
    if (!w_.bias.empty())
      for (int64_t t = 0; t < n_tokens; ++t)
        for (int64_t n = 0; n < N; ++n) y[t * N + n] += w_.bias[n];
  }

  int64_t n_in() const override { return n_in_; }
  int64_t n_out() const override { return n_out_; }
  std::string format() const override { return w_.format; }
  size_t weight_bytes() const override { return w_.weight.nbytes() + w_.scale.size() * sizeof(float); }
  void dequantize_row(int64_t row, float* out) const override { decode(row, 1, 0, n_in_, out); }

 private:
  // Rows [r0, r0 + rows), elements [k0, k0 + len), to f32 rows of len.
  void decode(int64_t r0, int64_t rows, int64_t k0, int64_t len, float* out) const {
    const auto& lut = e4m3_table();
    const auto* wp = w_.weight.data<uint8_t>();
    const int64_t nbk = w_.block_k > 0 ? (n_in_ + w_.block_k - 1) / w_.block_k : 1;
    for (int64_t r = r0; r < r0 + rows; ++r, out += len) {
      const uint8_t* src = wp + r * n_in_;
      if (w_.block_k == 0) {
        const float s = w_.scale[r];
        for (int64_t k = 0; k < len; ++k) out[k] = lut[src[k0 + k]] * s;
      } else {
        const float* srow = w_.scale.data() + (r / w_.block_n) * nbk;
        for (int64_t k = 0; k < len; ++k) out[k] = lut[src[k0 + k]] * srow[(k0 + k) / w_.block_k];
      }
    }
  }

  Fp8LinearWeights w_;
  int64_t n_out_, n_in_;
};

}  // namespace

std::unique_ptr<LinearKernel> make_fp8_linear(Fp8LinearWeights w) { return std::make_unique<Fp8Linear>(std::move(w)); }

Fp8LinearWeights shard_fp8_linear(Fp8LinearWeights w, const LinearSpec& spec) {
  if (spec.n_shards <= 1) return w;
  const bool by_rows = spec.role != ParallelRole::kRow;
  const int64_t N = w.weight.dim(0), K = w.weight.dim(1);
  const bool blocks = w.block_k > 0;
  int64_t unit = 1;
  if (by_rows && blocks) unit = w.block_n;
  if (!by_rows) unit = std::lcm(blocks ? w.block_k : 1, w.act == Fp8Act::kGroup ? w.act_group : 1);
  const ShardRange split = shard_range(spec, unit, by_rows && blocks ? "FP8 weight block row" : "FP8 block or activation group");
  const int64_t nbk = blocks ? (K + w.block_k - 1) / w.block_k : 1;
  std::vector<float> scale;
  if (by_rows) {
    w.weight = slice_rows(w.weight, split);
    if (!blocks) scale.assign(w.scale.begin() + split.begin, w.scale.begin() + split.end);
    else scale.assign(w.scale.begin() + split.begin / w.block_n * nbk, w.scale.begin() + split.end / w.block_n * nbk);
    if (!w.bias.empty()) w.bias.assign(w.bias.begin() + split.begin, w.bias.begin() + split.end);
  } else {
    w.weight = copy_columns(w.weight, split);
    if (!blocks) {
      scale = w.scale;
    } else {
      const int64_t nbn = (N + w.block_n - 1) / w.block_n;
      for (int64_t b = 0; b < nbn; ++b)
        scale.insert(scale.end(), w.scale.begin() + b * nbk + split.begin / w.block_k,
                     w.scale.begin() + b * nbk + split.end / w.block_k);
    }
    w.reduce_max = spec.reduce_max;
    if (spec.shard != 0) w.bias.clear();
  }
  w.scale = std::move(scale);
  return w;
}

}  // namespace quanta::quant
