#include "quanta/kernels/ops.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "quanta/core/thread_pool.h"

namespace quanta::kernels {

void rms_norm(const float* x, const float* w, float* y, int64_t n_rows, int64_t n, float eps,
              bool one_plus_weight) {
  for (int64_t r = 0; r < n_rows; ++r) {
    const float* xr = x + r * n;
    float* yr = y + r * n;
    double ss = 0.0;
    for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(xr[i]) * xr[i];
    float inv = 1.0f / std::sqrt(static_cast<float>(ss / static_cast<double>(n)) + eps);
    if (one_plus_weight) {
      for (int64_t i = 0; i < n; ++i) yr[i] = xr[i] * inv * (1.0f + w[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) yr[i] = w[i] * (xr[i] * inv);
    }
  }
}

void rope(float* x, int64_t n_tokens, int64_t stride, int n_heads, int d_head, int d_rot,
          const int64_t* positions, const float* inv_freq, float attention_factor, bool interleaved) {
  const int half = d_rot / 2;
  std::vector<float> cos_v(static_cast<size_t>(half)), sin_v(static_cast<size_t>(half));
  for (int64_t t = 0; t < n_tokens; ++t) {
    // The angle is formed in f32 as transformers does (position * inv_freq).
    float pos = static_cast<float>(positions[t]);
    for (int i = 0; i < half; ++i) {
      float angle = pos * inv_freq[i];
      cos_v[static_cast<size_t>(i)] = static_cast<float>(std::cos(static_cast<double>(angle))) * attention_factor;
      sin_v[static_cast<size_t>(i)] = static_cast<float>(std::sin(static_cast<double>(angle))) * attention_factor;
    }
    for (int h = 0; h < n_heads; ++h) {
      float* v = x + t * stride + static_cast<int64_t>(h) * d_head;
      const int stride_pair = interleaved ? 2 : 1, other = interleaved ? 1 : half;
      for (int i = 0; i < half; ++i) {
        float& a = v[i * stride_pair];
        float& b = v[i * stride_pair + other];
        const float ca = a, cb = b;
        a = ca * cos_v[static_cast<size_t>(i)] - cb * sin_v[static_cast<size_t>(i)];
        b = cb * cos_v[static_cast<size_t>(i)] + ca * sin_v[static_cast<size_t>(i)];
      }
    }
  }
}

void softmax(float* x, int64_t n) {
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) m = std::max(m, x[i]);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - m);
    sum += x[i];
  }
  float inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

float gelu_tanh(float x) {
  const float k = 0.7978845608028654f;  // sqrt(2 / pi)
  return 0.5f * x * (1.0f + std::tanh(k * (x + 0.044715f * x * x * x)));
}

float silu(float x) { return x / (1.0f + std::exp(-x)); }

namespace {
// The cache positions query `pos` may see: [lo, hi).
inline void visible_range(const AttentionShape& s, int64_t pos, int64_t n_kv, int64_t* lo, int64_t* hi) {
  *hi = s.causal ? std::min(n_kv, pos + 1) : n_kv;
  *lo = s.window > 0 ? std::max<int64_t>(0, pos - s.window + 1) : 0;
}

// Row of position j for kv head h.
inline int64_t kv_row(const KvLayout& kv, const int32_t* blocks, int n_kv_heads, int kvh, int64_t j) {
  return (static_cast<int64_t>(blocks[j / kv.block_size]) * n_kv_heads + kvh) * kv.block_size + j % kv.block_size;
}
}  // namespace

void attention(const KernelTable& kt, const AttentionShape& s, const KvLayout& kv,
               const AttentionSeq* seqs, size_t n_seqs, ThreadPool* pool) {
  const int group = s.n_heads / s.n_kv_heads;
  // Work items are (sequence, token, head), numbered through all sequences.
  std::vector<int64_t> first_item(n_seqs + 1, 0);
  for (size_t i = 0; i < n_seqs; ++i) first_item[i + 1] = first_item[i] + seqs[i].n_tokens * s.n_heads;
  auto work = [&](int64_t begin, int64_t end) {
    std::vector<float> scores;
    size_t si = static_cast<size_t>(std::upper_bound(first_item.begin(), first_item.end(), begin) - first_item.begin()) - 1;
    for (int64_t item = begin; item < end; ++item) {
      while (item >= first_item[si + 1]) ++si;
      const AttentionSeq& sq = seqs[si];
      int64_t local = item - first_item[si];
      int64_t t = local / s.n_heads;
      int h = static_cast<int>(local % s.n_heads);
      int kvh = h / group;
      const float* qv = sq.q + t * kv.q_stride + static_cast<int64_t>(h) * s.d_head;
      float* o = sq.out + t * kv.out_stride + static_cast<int64_t>(h) * s.d_head;
      int64_t lo, hi;
      visible_range(s, sq.positions[t], sq.n_kv, &lo, &hi);
      std::fill(o, o + s.d_head, 0.0f);
      if (hi <= lo) continue;
      scores.resize(static_cast<size_t>(hi - lo + (s.sinks ? 1 : 0)));
      if (s.sinks) scores.back() = s.sinks[h];
      for (int64_t j = lo; j < hi; ++j) {
        const float* krow = kv.k + kv_row(kv, sq.blocks, s.n_kv_heads, kvh, j) * s.d_head;
        float sc = kt.dot_f32(qv, krow, s.d_head) * s.scale;
        if (s.softcap > 0.0f) sc = s.softcap * std::tanh(sc / s.softcap);
        scores[static_cast<size_t>(j - lo)] = sc;
      }
      softmax(scores.data(), static_cast<int64_t>(scores.size()));
      for (int64_t j = lo; j < hi; ++j) {
        const float* vrow = kv.v + kv_row(kv, sq.blocks, s.n_kv_heads, kvh, j) * s.d_head;
        kt.axpy_f32(scores[static_cast<size_t>(j - lo)], vrow, o, s.d_head);
      }
    }
  };
  const int64_t n_items = first_item[n_seqs];
  if (pool) pool->parallel_for(n_items, 1, work);
  else work(0, n_items);
}

void attention_reference(const AttentionShape& s, const KvLayout& kv, const AttentionSeq& sq) {
  const int group = s.n_heads / s.n_kv_heads;
  for (int64_t t = 0; t < sq.n_tokens; ++t) {
    const int64_t pos = sq.positions[t];
    for (int h = 0; h < s.n_heads; ++h) {
      const int kvh = h / group;
      std::vector<double> p(static_cast<size_t>(sq.n_kv), 0.0);
      std::vector<bool> visible(static_cast<size_t>(sq.n_kv), false);
      double m = -1e300;
      for (int64_t j = 0; j < sq.n_kv; ++j) {
        if ((s.causal && j > pos) || (s.window > 0 && j <= pos - s.window)) continue;
        const float* krow = kv.k + kv_row(kv, sq.blocks, s.n_kv_heads, kvh, j) * s.d_head;
        double sc = 0.0;
        for (int d = 0; d < s.d_head; ++d) sc += static_cast<double>(sq.q[t * kv.q_stride + h * s.d_head + d]) * krow[d];
        sc *= s.scale;
        if (s.softcap > 0.0f) sc = s.softcap * std::tanh(sc / s.softcap);
        p[static_cast<size_t>(j)] = sc;
        visible[static_cast<size_t>(j)] = true;
        m = std::max(m, sc);
      }
      if (s.sinks) m = std::max(m, static_cast<double>(s.sinks[h]));
      double sum = s.sinks ? std::exp(s.sinks[h] - m) : 0.0;
      for (int64_t j = 0; j < sq.n_kv; ++j)
        if (visible[static_cast<size_t>(j)]) sum += p[static_cast<size_t>(j)] = std::exp(p[static_cast<size_t>(j)] - m);
      for (int d = 0; d < s.d_head; ++d) {
        double acc = 0.0;
        for (int64_t j = 0; j < sq.n_kv; ++j) {
          if (!visible[static_cast<size_t>(j)]) continue;
          const float* vrow = kv.v + kv_row(kv, sq.blocks, s.n_kv_heads, kvh, j) * s.d_head;
          acc += p[static_cast<size_t>(j)] / sum * vrow[d];
        }
        sq.out[t * kv.out_stride + h * s.d_head + d] = static_cast<float>(sum > 0 ? acc : 0.0);
      }
    }
  }
}

}  // namespace quanta::kernels
