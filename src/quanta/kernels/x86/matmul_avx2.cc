// AVX2 + FMA kernels for f32 activations against f32, bf16 and f16 weights.
//
// Layout: weights [n_out, n_in] row-major (a Linear weight as checkpoints store
// it), activations [n_tokens, n_in]. The register tile is kRows output rows x
// kCols tokens: each 8-wide weight load (converted to f32 on the fly, so bf16
// weights stream at half the bytes) feeds kCols FMAs and each activation load
// feeds kRows FMAs; 4 x 3 accumulators + 3 activations + 1 weight fill the 16
// ymm registers. Tokens are walked in blocks that fit L2, so a weight tile stays
// in L1 while the block of activations streams past it.
#include <immintrin.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "quanta/core/dtype.h"
#include "quanta/kernels/kernels.h"
#include "quanta/kernels/ops.h"

namespace quanta::kernels {

namespace {

constexpr int kRows = 4;
constexpr int kCols = 3;
constexpr int64_t kTokenBlock = 48;

struct LoadF32 {
  static __m256 load(const void* w, int64_t i) { return _mm256_loadu_ps(static_cast<const float*>(w) + i); }
  static float scalar(const void* w, int64_t i) { return static_cast<const float*>(w)[i]; }
};
struct LoadBF16 {
  static __m256 load(const void* w, int64_t i) {
    __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16));
  }
  static float scalar(const void* w, int64_t i) { return bf16_to_f32(static_cast<const uint16_t*>(w)[i]); }
};
struct LoadF16 {
  static __m256 load(const void* w, int64_t i) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + i)));
  }
  static float scalar(const void* w, int64_t i) { return f16_to_f32(static_cast<const uint16_t*>(w)[i]); }
};

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// y[c, o + r] for r < R, c < C.
template <typename L, int R, int C>
void tile(const float* x, int64_t n_in, const void* w, int64_t o, float* y, int64_t ldy) {
  __m256 acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= n_in; k += 8) {
    __m256 xv[C];
    for (int c = 0; c < C; ++c) xv[c] = _mm256_loadu_ps(x + c * n_in + k);
    for (int r = 0; r < R; ++r) {
      __m256 wv = L::load(w, (o + r) * n_in + k);
      for (int c = 0; c < C; ++c) acc[r][c] = _mm256_fmadd_ps(wv, xv[c], acc[r][c]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) {
      float s = hsum(acc[r][c]);
      for (int64_t kk = k; kk < n_in; ++kk) s += x[c * n_in + kk] * L::scalar(w, (o + r) * n_in + kk);
      y[c * ldy + o + r] = s;
    }
  }
}

template <typename L, int R>
void tile_cols(int c, const float* x, int64_t n_in, const void* w, int64_t o, float* y, int64_t ldy) {
  switch (c) {
    case 3: tile<L, R, 3>(x, n_in, w, o, y, ldy); break;
    case 2: tile<L, R, 2>(x, n_in, w, o, y, ldy); break;
    default: tile<L, R, 1>(x, n_in, w, o, y, ldy); break;
  }
}

// Dispatches a register tile with r rows (1..kRows) and c tokens (1..kCols).
template <typename L>
void tile_any(int r, int c, const float* x, int64_t n_in, const void* w, int64_t o, float* y, int64_t ldy) {
  switch (r) {
    case 4: tile_cols<L, 4>(c, x, n_in, w, o, y, ldy); break;
    case 3: tile_cols<L, 3>(c, x, n_in, w, o, y, ldy); break;
    case 2: tile_cols<L, 2>(c, x, n_in, w, o, y, ldy); break;
    default: tile_cols<L, 1>(c, x, n_in, w, o, y, ldy); break;
  }
}

template <typename L>
void matmul(const MatmulArgs& a) {
  // With more than one register tile of tokens, 16-bit weights are widened to
  // f32 once per row block and token block, instead of once per register tile.
  constexpr bool kWiden = !std::is_same_v<L, LoadF32>;
  thread_local std::vector<float> widened;
  for (int64_t t0 = 0; t0 < a.n_tokens; t0 += kTokenBlock) {
    int64_t t1 = std::min(a.n_tokens, t0 + kTokenBlock);
    const bool widen = kWiden && t1 - t0 > kCols;
    for (int64_t o = a.o_begin; o < a.o_end; o += kRows) {
      int r = static_cast<int>(std::min<int64_t>(kRows, a.o_end - o));
      if (widen) {
        widened.resize(static_cast<size_t>(r * a.n_in));
        for (int64_t i = 0; i < r * a.n_in; i += 8) {
          if (i + 8 <= r * a.n_in) _mm256_storeu_ps(&widened[static_cast<size_t>(i)], L::load(a.w, o * a.n_in + i));
          else for (int64_t j = i; j < r * a.n_in; ++j) widened[static_cast<size_t>(j)] = L::scalar(a.w, o * a.n_in + j);
        }
      }
      for (int64_t t = t0; t < t1; t += kCols) {
        int c = static_cast<int>(std::min<int64_t>(kCols, t1 - t));
        const float* x = a.x + t * a.n_in;
        float* y = a.y + t * a.ldy;
        if (widen) tile_any<LoadF32>(r, c, x, a.n_in, widened.data(), 0, y + o, a.ldy);
        else tile_any<L>(r, c, x, a.n_in, a.w, o, y, a.ldy);
      }
    }
  }
}

float dot_f32_avx2(const float* a, const float* b, int64_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
  float s = hsum(_mm256_add_ps(acc0, acc1));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

void axpy_f32_avx2(float alpha, const float* x, float* y, int64_t n) {
  __m256 va = _mm256_set1_ps(alpha);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += alpha * x[i];
}

// e^x to about 2 ulp: x = n ln2 + r with |r| <= ln2/2, e^r from Cephes' expf
// polynomial, 2^n put in the exponent field. x is clamped to [-87.3, 88] so 2^n
// stays a normal float (e^x of a larger x is huge either way; callers divide by it).
inline __m256 exp_ps(__m256 x) {
  x = _mm256_min_ps(_mm256_set1_ps(88.0f), x);  // min/max return x when it is NaN
  x = _mm256_max_ps(_mm256_set1_ps(-87.3f), x);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  const __m256 er = _mm256_add_ps(_mm256_fmadd_ps(_mm256_mul_ps(p, r), r, r), _mm256_set1_ps(1.0f));
  const __m256i pow2n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(er, _mm256_castsi256_ps(pow2n));
}

// x / (1 + e^-z): x * sigmoid(z).
inline __m256 times_sigmoid(__m256 x, __m256 z) {
  const __m256 e = exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), z));
  return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

void silu_mul_avx2(const float* gate, const float* up, float* out, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 x = _mm256_loadu_ps(gate + i);
    _mm256_storeu_ps(out + i, _mm256_mul_ps(times_sigmoid(x, x), _mm256_loadu_ps(up + i)));
  }
  for (; i < n; ++i) out[i] = silu(gate[i]) * up[i];
}

void gelu_tanh_mul_avx2(const float* gate, const float* up, float* out, int64_t n) {
  const __m256 k2 = _mm256_set1_ps(2.0f * 0.7978845608028654f), c = _mm256_set1_ps(0.044715f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 x = _mm256_loadu_ps(gate + i);
    const __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
    const __m256 two_u = _mm256_mul_ps(k2, _mm256_fmadd_ps(c, x3, x));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(times_sigmoid(x, two_u), _mm256_loadu_ps(up + i)));
  }
  for (; i < n; ++i) out[i] = gelu_tanh(gate[i]) * up[i];
}

}  // namespace

const KernelTable& avx2_table() {
  static const KernelTable table = {Isa::kAvx2, matmul<LoadF32>, matmul<LoadBF16>, matmul<LoadF16>, matmul<LoadF32>,
                                    dot_f32_avx2, axpy_f32_avx2, silu_mul_avx2, gelu_tanh_mul_avx2};
  return table;
}

}  // namespace quanta::kernels
