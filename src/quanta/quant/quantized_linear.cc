#include "quanta/quant/quantized_linear.h"

#include <algorithm>
#include <cmath>

#include "quanta/core/dtype.h"
#include "quanta/core/thread_pool.h"
#include "quanta/kernels/tile_gemm.h"

namespace quanta::quant {

float abs_max(const float* x, int64_t n) {
  float amax = 0.0f;
  for (int64_t k = 0; k < n; ++k) amax = std::max(amax, std::fabs(x[k]));
  return amax;
}

float quantize_row_symmetric(const float* x, int64_t n, int qmax, int8_t* q) {
  return quantize_row_with_max(x, n, abs_max(x, n), qmax, q);
}

float quantize_row_with_max(const float* x, int64_t n, float amax, int qmax, int8_t* q) {
  const float s = amax / static_cast<float>(qmax);
  if (!(s > 0.0f) || !std::isfinite(s)) {
    // An all-zero row quantizes to zeros (any scale gives 0); a non-finite one
    // has no meaningful scale either: the output becomes NaN through s.
    std::fill(q, q + n, int8_t{0});
    return amax == 0.0f ? 0.0f : std::nanf("");
  }
  const float lim = static_cast<float>(qmax);
  for (int64_t k = 0; k < n; ++k) q[k] = static_cast<int8_t>(std::clamp(std::nearbyint(x[k] / s), -lim, lim));
  return s;
}

void quantize_row_static(const float* x, int64_t n, float scale, float offset, int8_t* q) {
  for (int64_t k = 0; k < n; ++k) q[k] = static_cast<int8_t>(std::clamp(std::nearbyint(x[k] / scale + offset), -128.0f, 127.0f));
}

namespace {

class IntLinear : public LinearKernel {
 public:
  IntLinear(IntLinearWeights w, const kernels::QuantLinearKernels& kt) : w_(std::move(w)), kt_(kt) {
    n_out_ = w_.weight.dim(0);
    n_in_ = w_.weight.dim(1);
    if (w_.group_size <= 0) w_.group_size = n_in_;
    n_groups_ = n_in_ / w_.group_size;
    switch (w_.scheme) {
      case Scheme::kW8A16: act_ = IntAct::kNone; break;
      case Scheme::kW8A8: act_ = IntAct::kStatic8; break;
      case Scheme::kW4A4Dynamic: act_ = IntAct::kDynamic4; break;
      default: act_ = IntAct::kDynamic8; break;
    }
    // int4 weights are repacked two per byte (half the bytes to stream) when the
    // groups are whole 32-blocks.
    if (act_ == IntAct::kDynamic4 && w_.group_size % 32 == 0) {
      packed_ = Tensor::zeros(DType::kU8, {n_out_, n_in_ / 2});
      Tensor rows = Tensor::zeros(DType::kU8, {n_out_, n_in_ / 2});
      for (int64_t n = 0; n < n_out_; ++n)
        kernels::pack_u4(w_.weight.data<int8_t>() + n * n_in_, n_in_, rows.data_mut<uint8_t>() + n * (n_in_ / 2));
      // Pairs of rows interleaved per block: the kernel's 2-row loop reads one
      // stream. Per-group calls start at a later block, which needs every row paired.
      if (n_groups_ == 1 || n_out_ % 2 == 0)
        rows2_ = kernels::pack_rows2_u4(rows.data<uint8_t>(), n_out_, n_in_, packed_.data_mut<uint8_t>());
      else
        packed_ = std::move(rows);
      w_.weight = Tensor();
    }
    // AMX multiplies int8 rows as stored (tile rows) for batches; groups must
    // be whole 64-byte tile chunks.
    tiles_ = kernels::tiles_usable(kt_.isa) && (act_ == IntAct::kDynamic8 || act_ == IntAct::kStatic8) &&
             (n_groups_ == 1 || w_.group_size % 64 == 0);
    // Per-channel int8 weights are interleaved by 4 rows (pack_rows4): the
    // kernel then streams one sequence instead of 4 rows, 1.5x the bandwidth.
    if (!tiles_ && (act_ == IntAct::kDynamic8 || act_ == IntAct::kStatic8) && n_groups_ == 1 && n_in_ % 32 == 0 &&
        n_out_ >= 4) {
      Tensor packed = Tensor::zeros(DType::kI8, {n_out_, n_in_});
      rows4_ = kernels::pack_rows4(w_.weight.data<int8_t>(), n_out_, n_in_, packed.data_mut<int8_t>());
      w_.weight = std::move(packed);
    }
  }

  void forward(const float* x, int64_t n_tokens, float* y, ThreadPool& pool) const override {
    const int64_t K = n_in_, N = n_out_, G = w_.group_size;
    const int8_t* w = packed_.empty() ? w_.weight.data<int8_t>() : nullptr;
    if (act_ == IntAct::kNone) {
      pool.parallel_for(N, 16, [&](int64_t n0, int64_t n1) {
        const int64_t m = n1 - n0;
        std::vector<float> part(static_cast<size_t>(n_tokens * m));
        for (int64_t t = 0; t < n_tokens; ++t)
          for (int64_t n = n0; n < n1; ++n) y[t * N + n] = w_.bias.empty() ? 0.0f : w_.bias[n];
        for (int64_t g = 0; g < n_groups_; ++g) {
          kt_.gemm_f32_s8({x + g * G, K, n_tokens, w + g * G, K, G, n0, n1, part.data(), m});
          for (int64_t t = 0; t < n_tokens; ++t)
            for (int64_t n = n0; n < n1; ++n) y[t * N + n] += w_.scale[n * n_groups_ + g] * part[t * m + n - n0];
        }
      });
      return;
    }
    // Quantize the activations once, tokens spread over the pool; every thread reads them.
    std::vector<int8_t> xq(static_cast<size_t>(n_tokens * K));
    std::vector<float> st(static_cast<size_t>(n_tokens), 1.0f);
    std::vector<std::pair<int64_t, int64_t>> minus128;  // static: (t, k) that saturated to -128
    // A row-parallel shard's dynamic scales: each token's max |x| over the whole row, combined
    // over the shards first (one process takes it in the loop below).
    std::vector<float> row_max;
    if (act_ != IntAct::kStatic8 && w_.reduce_max) {
      row_max.resize(static_cast<size_t>(n_tokens));
      for (int64_t t = 0; t < n_tokens; ++t) row_max[t] = abs_max(x + t * K, K);
      w_.reduce_max(row_max.data(), n_tokens);
    }
    pool.parallel_for(n_tokens, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        int8_t* q = xq.data() + t * K;
        if (act_ == IntAct::kStatic8) {
          quantize_row_static(x + t * K, K, w_.input_scale, w_.input_offset, q);
          continue;
        }
        const float amax = row_max.empty() ? abs_max(x + t * K, K) : row_max[t];
        if (w_.act_full_range) {
          st[t] = amax / 127.5f;
          if (amax > 0.0f && std::isfinite(amax)) {
            quantize_row_static(x + t * K, K, st[t], 0.0f, q);
          } else {
            std::fill(q, q + K, int8_t{0});
            st[t] = amax == 0.0f ? 0.0f : std::nanf("");
          }
        } else {
          st[t] = quantize_row_with_max(x + t * K, K, amax, act_ == IntAct::kDynamic4 ? 7 : 127, q);
        }
      }
    });
    if (act_ == IntAct::kStatic8 || w_.act_full_range)
      // The AVX2 dot needs activations in [-127, 127]: -128 runs as -127 and the
      // missing -1 * W[n, k] is added back below, so the sum stays exact.
      for (int64_t t = 0; t < n_tokens; ++t)
        for (int64_t k = 0; k < K; ++k)
          if (xq[t * K + k] == -128) {
            xq[t * K + k] = -127;
            minus128.emplace_back(t, k);
          }
    // Packed int4: sum_k x (w + 8) comes back; 8 * sum_k x per token and group is removed.
    std::vector<int32_t> xsum;
    if (!packed_.empty()) {
      xsum.assign(static_cast<size_t>(n_tokens * n_groups_), 0);
      for (int64_t t = 0; t < n_tokens; ++t)
        for (int64_t k = 0; k < K; ++k) xsum[t * n_groups_ + k / G] += xq[t * K + k];
    }
    // Tiles: each group's activations packed once for every thread.
    const bool tiles = tiles_ && n_tokens >= kernels::kTileMinTokens;
    std::vector<kernels::TileVector<uint8_t>> xp;
    if (tiles)
      for (int64_t g = 0; g < n_groups_; ++g) xp.push_back(kernels::tile_pack_s8(xq.data() + g * G, K, n_tokens, G, pool));
    // acc[t * m + n - n0] = sum over group g of x_q W, exact.
    auto gemm_s8 = [&](int64_t g, int64_t n0, int64_t n1, int32_t* acc) {
      const int64_t m = n1 - n0;
      if (tiles)
        kernels::tile_gemm_s8({xp[static_cast<size_t>(g)].data(), n_tokens, G, w + n0 * K + g * G, K, 0, m, acc, m});
      else
        kt_.gemm_s8({xq.data() + g * G, K, n_tokens, w + g * G, K, G, n0, n1, acc, m, rows4_});
    };
    pool.parallel_for(N, tiles ? 32 : 16, [&](int64_t n0, int64_t n1) {
      const int64_t m = n1 - n0;
      std::vector<int32_t> acc(static_cast<size_t>(n_tokens * m));
      if (!packed_.empty()) {
        const auto* wp = reinterpret_cast<const int8_t*>(packed_.data<uint8_t>());
        for (int64_t t = 0; t < n_tokens; ++t)
          for (int64_t n = n0; n < n1; ++n) y[t * N + n] = 0.0f;
        for (int64_t g = 0; g < n_groups_; ++g) {
          // Group g starts at byte g * G / 2 of a plain row, g * G of a pair.
          kt_.gemm_u4({xq.data() + g * G, K, n_tokens, wp + (rows2_ > 0 ? g * G : g * G / 2), K / 2, G, n0, n1,
                       acc.data(), m, 0, rows2_});
          for (int64_t t = 0; t < n_tokens; ++t)
            for (int64_t n = n0; n < n1; ++n)
              y[t * N + n] += w_.scale[n * n_groups_ + g] *
                              static_cast<float>(acc[t * m + n - n0] - 8 * xsum[t * n_groups_ + g]);
        }
        for (int64_t t = 0; t < n_tokens; ++t)
          for (int64_t n = n0; n < n1; ++n) {
            y[t * N + n] *= st[t];
            if (!w_.bias.empty()) y[t * N + n] += w_.bias[n];
          }
        return;
      }
      if (act_ == IntAct::kStatic8) {
        gemm_s8(0, n0, n1, acc.data());
        for (auto [t, k] : minus128)
          for (int64_t n = n0; n < n1; ++n) acc[t * m + n - n0] -= kernels::rows4_at(w, rows4_, K, n, k);
        for (int64_t t = 0; t < n_tokens; ++t)
          for (int64_t n = n0; n < n1; ++n)
            y[t * N + n] = static_cast<float>(acc[t * m + n - n0] + w_.quant_bias[n]) * w_.deq_scale[n];
        return;
      }
      for (int64_t t = 0; t < n_tokens; ++t)
        for (int64_t n = n0; n < n1; ++n) y[t * N + n] = 0.0f;
      for (int64_t g = 0; g < n_groups_; ++g) {
        gemm_s8(g, n0, n1, acc.data());
        for (auto [t, k] : minus128)
          if (k / G == g)
            for (int64_t n = n0; n < n1; ++n) acc[t * m + n - n0] -= kernels::rows4_at(w, rows4_, K, n, k);
        for (int64_t t = 0; t < n_tokens; ++t)
          for (int64_t n = n0; n < n1; ++n)
            y[t * N + n] += w_.scale[n * n_groups_ + g] * static_cast<float>(acc[t * m + n - n0]);
      }
      for (int64_t t = 0; t < n_tokens; ++t)
        for (int64_t n = n0; n < n1; ++n) {
          y[t * N + n] *= st[t];
          if (!w_.bias.empty()) y[t * N + n] += w_.bias[n];
        }
    });
  }

  int64_t n_in() const override { return n_in_; }
  int64_t n_out() const override { return n_out_; }
  std::string format() const override { return scheme_name(w_.scheme); }
  size_t weight_bytes() const override {
    return w_.weight.nbytes() + packed_.nbytes() + w_.scale.size() * 4 + w_.quant_bias.size() * 4 +
           w_.deq_scale.size() * 4;
  }

 private:
  IntLinearWeights w_;
  Tensor packed_;  // [n_out, n_in/2] u8, pack_u4 layout (W4A4 only), else empty
  const kernels::QuantLinearKernels& kt_;
  IntAct act_;
  int64_t n_out_ = 0, n_in_ = 0, n_groups_ = 1;
  bool tiles_ = false;  // batches run on AMX tiles (then rows stay plain: rows4_ == 0)
  int64_t rows4_ = 0;  // leading rows of w_.weight interleaved by pack_rows4
  int64_t rows2_ = 0;  // leading rows of packed_ paired by pack_rows2_u4
};

class MxLinear : public LinearKernel {
 public:
  MxLinear(MxLinearWeights w, const kernels::QuantLinearKernels& kt) : w_(std::move(w)), kt_(kt) {
    n_out_ = w_.weight.dim(0);
    n_in_ = w_.scheme == Scheme::kW8A8Mxfp8 ? w_.weight.dim(1) : 2 * w_.weight.dim(1);
  }

  void forward(const float* x, int64_t n_tokens, float* y, ThreadPool& pool) const override {
    const int64_t K = n_in_, N = n_out_, nb = K / kMxBlock;
    if (n_tokens >= kPrefillTokens) return forward_prefill(x, n_tokens, y, pool);
    std::vector<float> xa;
    std::vector<int8_t> x2;
    std::vector<uint8_t> xs;
    if (w_.scheme == Scheme::kW4A4Mxfp4) {
      x2.resize(static_cast<size_t>(n_tokens * K));
      xs.resize(static_cast<size_t>(n_tokens * nb));
      std::vector<uint8_t> codes(static_cast<size_t>(K));
      for (int64_t t = 0; t < n_tokens; ++t) {
        mx_quantize_row(MxElem::kE2M1, x + t * K, K, codes.data(), xs.data() + t * nb);
        for (int64_t k = 0; k < K; ++k) x2[t * K + k] = kernels::kE2m1Times2[codes[k]];
      }
    } else {
      xa.resize(static_cast<size_t>(n_tokens * K));
      for (int64_t t = 0; t < n_tokens; ++t) mx_fake_quantize_row(MxElem::kE4M3, x + t * K, K, xa.data() + t * K);
    }
    const auto* wp = static_cast<const uint8_t*>(w_.weight.raw());
    const auto* ws = w_.scale.data<uint8_t>();
    pool.parallel_for(N, 16, [&](int64_t n0, int64_t n1) {
      kernels::GemmMxArgs a{xa.data(), x2.data(), xs.data(), n_tokens, K, wp, ws, n0, n1, y, N};
      switch (w_.scheme) {
        case Scheme::kW8A8Mxfp8: kt_.gemm_f32_mxfp8(a); break;
        case Scheme::kW4A8Mxfp: kt_.gemm_f32_mxfp4(a); break;
        default: kt_.gemm_mxfp4_mxfp4(a); break;
      }
      if (!w_.bias.empty())
        for (int64_t t = 0; t < n_tokens; ++t)
          for (int64_t n = n0; n < n1; ++n) y[t * N + n] += w_.bias[n];
    });
  }

  int64_t n_in() const override { return n_in_; }
  int64_t n_out() const override { return n_out_; }
  std::string format() const override { return scheme_name(w_.scheme); }
  size_t weight_bytes() const override { return w_.weight.nbytes() + w_.scale.nbytes(); }

 private:
  static constexpr int64_t kPrefillTokens = 4;

  // Many tokens: an MX value (element * 2^k) is exact in f32, so the activations are
  // MX-rounded to f32, each block of weight rows is decoded to f32 once per block of
  // tokens, and the float matmul kernel does the products (same math as the block
  // kernels, another summation order).
  void forward_prefill(const float* x, int64_t n_tokens, float* y, ThreadPool& pool) const {
    const int64_t K = n_in_, N = n_out_, nb = K / kMxBlock;
    const MxElem act = w_.scheme == Scheme::kW4A4Mxfp4 ? MxElem::kE2M1 : MxElem::kE4M3;
    const MxElem wel = w_.scheme == Scheme::kW8A8Mxfp8 ? MxElem::kE4M3 : MxElem::kE2M1;
    std::vector<float> xa(static_cast<size_t>(n_tokens * K));
    pool.parallel_for(n_tokens, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) mx_fake_quantize_row(act, x + t * K, K, xa.data() + t * K);
    });
    const auto* wp = static_cast<const uint8_t*>(w_.weight.raw());
    const auto* ws = w_.scale.data<uint8_t>();
    const auto& fk = kernels::kernels_for(kt_.isa);
    const bool e4m3 = wel == MxElem::kE4M3;
    const int64_t row_bytes = e4m3 ? K : K / 2;
    // Rows [r0, r0 + rows), elements [k0, k0 + len) (whole 32-blocks), to f32 rows of len.
    auto decode = [&](int64_t r0, int64_t rows, int64_t k0, int64_t len, float* out) {
      for (int64_t r = r0; r < r0 + rows; ++r, out += len) kt_.dequant_mx_row(e4m3, wp + r * row_bytes, ws + r * nb, k0, len, out);
    };
    if (kernels::tiles_usable(kt_.isa)) {
      // MX values are exact in bf16 (at most 4 significant bits times a power of
      // two): the tiles multiply them exactly, one bf16 part each.
      kernels::tile_gemm_decoded(xa.data(), n_tokens, K, N, false, false, decode, y, pool);
    } else {
      // 64 rows per tile: matmul_bf16_exact converts the token block to bf16 once per call.
      constexpr int64_t kRowsPerTile = 64, kTokenBlock = 48;
      pool.parallel_for(N, kRowsPerTile, [&](int64_t n0, int64_t n1) {
        std::vector<float> tile(static_cast<size_t>(kRowsPerTile * K));
        for (int64_t t0 = 0; t0 < n_tokens; t0 += kTokenBlock) {
          const int64_t t1 = std::min(n_tokens, t0 + kTokenBlock);
          for (int64_t r0 = n0; r0 < n1; r0 += kRowsPerTile) {
            const int64_t r1 = std::min(n1, r0 + kRowsPerTile);
            decode(r0, r1 - r0, 0, K, tile.data());
            fk.matmul_bf16_exact({xa.data() + t0 * K, t1 - t0, K, tile.data(), y + t0 * N + r0, N, 0, r1 - r0});
          }
        }
      });
    }
    if (!w_.bias.empty())
      for (int64_t t = 0; t < n_tokens; ++t)
        for (int64_t n = 0; n < N; ++n) y[t * N + n] += w_.bias[n];
  }

  MxLinearWeights w_;
  const kernels::QuantLinearKernels& kt_;
  int64_t n_out_ = 0, n_in_ = 0;
};

}  // namespace

std::unique_ptr<LinearKernel> make_int_linear(IntLinearWeights w, const kernels::QuantLinearKernels& kt) {
  return std::make_unique<IntLinear>(std::move(w), kt);
}

std::unique_ptr<LinearKernel> make_mx_linear(MxLinearWeights w, const kernels::QuantLinearKernels& kt) {
  return std::make_unique<MxLinear>(std::move(w), kt);
}

// Spec's shard of a layer loaded whole (the per-channel vectors follow the rows; a row-parallel
// shard keeps every row, the columns of its input features, whole scale groups of them, and
// only shard 0 adds the bias and static W8A8's quant_bias, which the all-reduce then adds once).
// Static and per-channel layers split anywhere; grouped ones on group boundaries.
IntLinearWeights shard_int_linear(IntLinearWeights w, const LinearSpec& spec) {
  if (spec.n_shards <= 1) return w;
  const bool by_rows = spec.role != ParallelRole::kRow;
  const int64_t N = w.weight.dim(0), K = w.weight.dim(1);
  const bool grouped = w.group_size > 0 && w.group_size < K;
  const ShardRange split = shard_range(spec, by_rows || !grouped ? 1 : w.group_size, "quantization group");
  const ShardRange rows = by_rows ? split : ShardRange{0, N};
  w.weight = by_rows ? slice_rows(w.weight, rows) : copy_columns(w.weight, split);
  if (!w.scale.empty()) {
    const int64_t n_groups = grouped ? K / w.group_size : 1;
    const ShardRange groups = by_rows || !grouped ? ShardRange{0, n_groups}
                                                  : ShardRange{split.begin / w.group_size, split.end / w.group_size};
    std::vector<float> scale;
    for (int64_t r = rows.begin; r < rows.end; ++r)
      scale.insert(scale.end(), w.scale.begin() + r * n_groups + groups.begin, w.scale.begin() + r * n_groups + groups.end);
    w.scale = std::move(scale);
    if (!grouped) w.group_size = w.weight.dim(1);
  }
  if (by_rows) {
    if (!w.bias.empty()) w.bias.assign(w.bias.begin() + rows.begin, w.bias.begin() + rows.end);
    if (!w.quant_bias.empty()) w.quant_bias.assign(w.quant_bias.begin() + rows.begin, w.quant_bias.begin() + rows.end);
    if (!w.deq_scale.empty()) w.deq_scale.assign(w.deq_scale.begin() + rows.begin, w.deq_scale.begin() + rows.end);
  } else {
    w.reduce_max = spec.reduce_max;  // dynamic activation scales over the whole row
    if (spec.shard != 0) {  // added once, by shard 0
      w.bias.clear();
      std::fill(w.quant_bias.begin(), w.quant_bias.end(), 0);
    }
  }
  return w;
}

// Spec's shard of an MX layer: whole 32-element blocks of input features for a row-parallel one.
MxLinearWeights shard_mx_linear(MxLinearWeights w, const LinearSpec& spec) {
  if (spec.n_shards <= 1) return w;
  const bool by_rows = spec.role != ParallelRole::kRow;
  const ShardRange split = shard_range(spec, by_rows ? 1 : kMxBlock, "MX block");
  if (by_rows) {
    w.weight = slice_rows(w.weight, split);
    w.scale = slice_rows(w.scale, split);
    if (!w.bias.empty()) w.bias.assign(w.bias.begin() + split.begin, w.bias.begin() + split.end);
    return w;
  }
  const int64_t per_byte = w.scheme == Scheme::kW8A8Mxfp8 ? 1 : 2;  // E2M1 packs two per byte
  w.weight = copy_columns(w.weight, {split.begin / per_byte, split.end / per_byte});
  w.scale = copy_columns(w.scale, {split.begin / kMxBlock, split.end / kMxBlock});
  if (spec.shard != 0) w.bias.clear();
  return w;
}

}  // namespace quanta::quant
