#include "quanta/quant/group_int_linear.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "quanta/core/error.h"
#include "quanta/core/thread_pool.h"
#include "quanta/kernels/kernels.h"
#include "quanta/kernels/tile_gemm.h"

namespace quanta::quant {

namespace {

// Decoding (fewer tokens than this) runs the integer dot kernels, prompts decode
// f32 tiles of rows (the same threshold and tile size as the GGUF kernels).
constexpr int64_t kTileMinTokens = 16;
constexpr int64_t kTileBytes = 96 * 1024;

class GroupIntLinear : public LinearKernel {
 public:
  GroupIntLinear(GroupIntWeights w, std::vector<int32_t> perm, const kernels::GroupIntKernels& kt)
      : kt_(kt),
        n_out_(w.n_out),
        n_in_(w.n_in),
        group_(w.group_size),
        n_groups_(w.n_in / w.group_size),
        codes4_(w.bits <= 4),
        row_bytes_(codes4_ ? w.n_in / 2 : w.n_in),
        perm_(std::move(perm)),
        bias_(std::move(w.bias)),
        act_int8_(w.act_int8),
        format_(std::move(w.format)) {
    q_.resize(static_cast<size_t>(n_out_ * row_bytes_));
    sm_.resize(static_cast<size_t>(n_out_ * n_groups_ * 2));
    std::vector<uint8_t> row(static_cast<size_t>(n_in_));
    for (int64_t n = 0; n < n_out_; ++n) {
      const uint8_t* src = w.q.data() + n * n_in_;
      if (!perm_.empty())
        for (int64_t k = 0; k < n_in_; ++k) row[k] = src[perm_[k]];
      else
        std::copy(src, src + n_in_, row.begin());
      uint8_t* dst = q_.data() + n * row_bytes_;
      if (codes4_) kernels::pack_group_int4(row.data(), n_in_, dst);
      else std::copy(row.begin(), row.end(), dst);
      for (int64_t g = 0; g < n_groups_; ++g) {
        const float s = w.scale[n * n_groups_ + g];
        sm_[(n * n_groups_ + g) * 2] = s;
        sm_[(n * n_groups_ + g) * 2 + 1] = s * static_cast<float>(w.zero[n * n_groups_ + g]);
      }
    }
  }

  void forward(const float* x, int64_t n_tokens, float* y, ThreadPool& pool) const override {
    std::vector<float> gathered;
    if (!perm_.empty()) {
      gathered.resize(static_cast<size_t>(n_tokens * n_in_));
      for (int64_t t = 0; t < n_tokens; ++t)
        for (int64_t k = 0; k < n_in_; ++k) gathered[t * n_in_ + k] = x[t * n_in_ + perm_[k]];
      x = gathered.data();
    }
    std::vector<int8_t> xq;
    std::vector<float> st;
    if (act_int8_) {
      // Per-token int8 (compressed-tensors' rule); prompts multiply x_q * s_t, exact in f32.
      xq.resize(static_cast<size_t>(n_tokens * n_in_));
      st.resize(static_cast<size_t>(n_tokens));
      if (gathered.empty()) gathered.assign(x, x + n_tokens * n_in_);
      for (int64_t t = 0; t < n_tokens; ++t) {
        float* row = gathered.data() + t * n_in_;
        float amax = 0.0f;
        for (int64_t k = 0; k < n_in_; ++k) amax = std::max(amax, std::fabs(row[k]));
        st[t] = amax / 127.5f;
        for (int64_t k = 0; k < n_in_; ++k) {
          const float q = st[t] > 0.0f ? std::clamp(std::nearbyint(row[k] / st[t]), -128.0f, 127.0f) : 0.0f;
          xq[t * n_in_ + k] = static_cast<int8_t>(q);
          row[k] = q * st[t];
        }
      }
      x = gathered.data();
    }
    const bool use_dot = n_tokens < kTileMinTokens && kt_.isa != kernels::Isa::kScalar;
    if (use_dot || kt_.gemm) {
      const Acts acts = quantize_acts(x, xq, st, n_tokens, use_dot, pool);
      if (use_dot) forward_dot(acts.view, n_tokens, y, pool);
      else forward_gemm(acts.view, n_tokens, y, pool);
    } else {
      forward_tiles(x, n_tokens, y, pool);
    }
    if (!bias_.empty())
      for (int64_t t = 0; t < n_tokens; ++t)
        for (int64_t o = 0; o < n_out_; ++o) y[t * n_out_ + o] += bias_[o];
  }

  int64_t n_in() const override { return n_in_; }
  int64_t n_out() const override { return n_out_; }
  std::string format() const override { return format_; }
  size_t weight_bytes() const override { return q_.size() + sm_.size() * sizeof(float); }
  void dequantize_row(int64_t row, float* out) const override {
    if (perm_.empty()) return decode(row, 1, 0, n_in_, out);
    std::vector<float> tmp(static_cast<size_t>(n_in_));
    decode(row, 1, 0, n_in_, tmp.data());
    for (int64_t k = 0; k < n_in_; ++k) out[perm_[k]] = tmp[k];
  }

 private:
  // Rows [r0, r0 + rows), elements [k0, k0 + len), to f32 rows of len.
  void decode(int64_t r0, int64_t rows, int64_t k0, int64_t len, float* out) const {
    for (int64_t r = r0; r < r0 + rows; ++r, out += len)
      kt_.dequant(codes4_, q_.data() + r * row_bytes_, sm_.data() + r * n_groups_ * 2, group_, k0, len, out);
  }

  // The integer kernels' activations: 16-bit per group_int_act_block, or W4A8's
  // int8 ones (x8/st: values and per-token scales; else empty), exactly.
  struct Acts {
    std::vector<int16_t> q;
    std::vector<float> d, dsum;
    std::vector<uint8_t> split;
    kernels::GroupIntActs view;
  };
  Acts quantize_acts(const float* x, const std::vector<int8_t>& x8, const std::vector<float>& st, int64_t n_tokens,
                     bool for_dot, ThreadPool& pool) const {
    const int64_t block = kernels::group_int_act_block(group_), n_blocks = n_in_ / block;
    Acts a;
    a.q.resize(static_cast<size_t>(n_tokens * n_in_));
    a.d.resize(static_cast<size_t>(n_tokens * n_blocks));
    a.dsum.resize(a.d.size());
    if (for_dot && kt_.split_acts && codes4_ && block == 128) a.split.resize(static_cast<size_t>(n_tokens * n_in_ * 2));
    pool.parallel_for(n_tokens, 1, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        int16_t* qt = a.q.data() + t * n_in_;
        if (x8.empty()) {
          kernels::quantize_group_int_acts(x + t * n_in_, n_in_, block, qt, a.d.data() + t * n_blocks,
                                           a.dsum.data() + t * n_blocks);
        } else {
          for (int64_t b = 0; b < n_blocks; ++b) {
            int32_t sum = 0;
            for (int64_t i = b * block; i < (b + 1) * block; ++i) sum += qt[i] = x8[t * n_in_ + i];
            a.d[t * n_blocks + b] = st[t];
            a.dsum[t * n_blocks + b] = st[t] * static_cast<float>(sum);
          }
        }
        if (!a.split.empty()) kernels::split_group_int_acts(qt, n_in_, a.split.data() + t * n_in_ * 2);
      }
    });
    a.view = {block, a.q.data(), a.d.data(), a.dsum.data(), a.split.empty() ? nullptr : a.split.data()};
    return a;
  }

  void forward_dot(const kernels::GroupIntActs& x, int64_t n_tokens, float* y, ThreadPool& pool) const {
    pool.parallel_for(n_out_, 16, [&](int64_t begin, int64_t end) {
      float out[kTileMinTokens];
      for (int64_t o = begin; o < end; ++o) {
        kt_.dot(codes4_, n_in_, group_, q_.data() + o * row_bytes_, sm_.data() + o * n_groups_ * 2, x,
                static_cast<int>(n_tokens), out);
        for (int64_t t = 0; t < n_tokens; ++t) y[t * n_out_ + o] = out[t];
      }
    });
  }

  // Prompts on tiers with an integer GEMM: panels of rows spread over the pool.
  void forward_gemm(const kernels::GroupIntActs& x, int64_t n_tokens, float* y, ThreadPool& pool) const {
    constexpr int64_t kRows = kernels::group_int_gemm_rows;
    pool.parallel_for(n_out_, kRows, [&](int64_t begin, int64_t end) {
      for (int64_t o = begin; o < end; o += kRows)
        kt_.gemm(codes4_, n_in_, group_, q_.data() + o * row_bytes_, row_bytes_, sm_.data() + o * n_groups_ * 2,
                 static_cast<int>(std::min(kRows, end - o)), x, n_tokens, y + o, n_out_);
    });
  }

  void forward_tiles(const float* x, int64_t n_tokens, float* y, ThreadPool& pool) const {
    if (kernels::tiles_usable(kt_.isa)) {
      // Codes times an f32 scale are not exact in bf16: both parts are split.
      kernels::tile_gemm_decoded(
          x, n_tokens, n_in_, n_out_, true, true,
          [&](int64_t n, int64_t rows, int64_t k0, int64_t len, float* out) { decode(n, rows, k0, len, out); }, y,
          pool);
      return;
    }
    const auto matmul = kernels::kernels_for(kt_.isa).matmul_f32;
    const int64_t tile_rows = std::max<int64_t>(4, kTileBytes / (4 * n_in_) / 4 * 4);
    pool.parallel_for(n_out_, tile_rows, [&](int64_t begin, int64_t end) {
      thread_local std::vector<float> tile;
      tile.resize(static_cast<size_t>(tile_rows * n_in_));
      for (int64_t o = begin; o < end; o += tile_rows) {
        const int64_t rows = std::min(tile_rows, end - o);
        decode(o, rows, 0, n_in_, tile.data());
        matmul({x, n_tokens, n_in_, tile.data(), y + o, n_out_, 0, rows});
      }
    });
  }

  const kernels::GroupIntKernels& kt_;
  int64_t n_out_, n_in_, group_, n_groups_;
  bool codes4_;
  int64_t row_bytes_;
  std::vector<uint8_t> q_;      // [n_out, row_bytes_] codes, input columns in perm_ order
  std::vector<float> sm_;       // [n_out, n_groups, 2] {scale, scale * zero}
  std::vector<int32_t> perm_;   // column k of q_ is checkpoint column perm_[k]; empty: identity
  std::vector<float> bias_;
  bool act_int8_;
  std::string format_;
};

}  // namespace

std::unique_ptr<LinearKernel> make_group_int_linear(GroupIntWeights w, const std::string& tensor,
                                                    const kernels::GroupIntKernels& kt) {
  const int64_t K = w.n_in, G = w.group_size, n_groups = (K + G - 1) / G;
  // Columns ordered by group (stable: within a group, checkpoint order).
  std::vector<int32_t> perm;
  if (!w.g_idx.empty()) {
    std::vector<int64_t> count(static_cast<size_t>(n_groups), 0);
    for (int64_t k = 0; k < K; ++k) {
      const int32_t g = w.g_idx[k];
      if (g < 0 || g >= n_groups)
        throw Error("g_idx[" + std::to_string(k) + "] = " + std::to_string(g) + " is not a group (there are " +
                        std::to_string(n_groups) + ")",
                    {.tensor = tensor});
      ++count[g];
    }
    for (int64_t g = 0; g < n_groups; ++g)
      if (count[g] != std::min(G, K - g * G))
        throw Error("g_idx is not a permutation of groups: group " + std::to_string(g) + " has " +
                        std::to_string(count[g]) + " columns, group size " + std::to_string(G),
                    {.tensor = tensor});
    bool identity = true;
    for (int64_t k = 0; k < K && identity; ++k) identity = w.g_idx[k] == k / G;
    if (!identity) {
      perm.resize(static_cast<size_t>(K));
      std::iota(perm.begin(), perm.end(), 0);
      std::stable_sort(perm.begin(), perm.end(), [&](int32_t a, int32_t b) { return w.g_idx[a] < w.g_idx[b]; });
    }
  }
  if (K % 32 != 0 || G % 32 != 0 || K % G != 0) {
    if (w.act_int8)
      throw Error("int8 activations need groups of whole 32-element blocks (group size " + std::to_string(G) +
                      ", input features " + std::to_string(K) + ")",
                  {.tensor = tensor});
    // Not whole 32-blocks: decoded to f32 once (no integer kernel takes them).
    Tensor dense = Tensor::zeros(DType::kF32, {w.n_out, K});
    float* d = dense.data_mut<float>();
    for (int64_t n = 0; n < w.n_out; ++n)
      for (int64_t k = 0; k < K; ++k) {
        const int64_t g = w.g_idx.empty() ? k / G : w.g_idx[k];
        d[n * K + k] = w.scale[n * n_groups + g] * static_cast<float>(int{w.q[n * K + k]} - w.zero[n * n_groups + g]);
      }
    Tensor bias;
    if (!w.bias.empty()) {
      bias = Tensor::zeros(DType::kF32, {w.n_out});
      std::copy(w.bias.begin(), w.bias.end(), bias.data_mut<float>());
    }
    return make_float_linear(std::move(dense), std::move(bias));
  }
  return std::make_unique<GroupIntLinear>(std::move(w), std::move(perm), kt);
}

}  // namespace quanta::quant
