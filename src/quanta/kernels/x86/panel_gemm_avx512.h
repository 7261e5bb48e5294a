// The AVX-512 VNNI prompt GEMM shared by the group-wise integer weights
// (group_int_avx512.cc) and the ggml block types (quant_dot_avx512.cc): a panel
// of 32 weight rows decoded once per call into 16-bit codes, laid out as
// vpdpwssd wants them (for each pair of inputs, the 32 rows' two codes side by
// side), against every token's 16-bit activation pairs, broadcast. Each
// `window` of inputs is an exact int32 sum per row and token, then one float
// multiply-add applies the row's scale times the activations' scale, and one
// more the row's offset times the activations' scaled sum:
//
//   y[t, r] = sum_w  s[w, r] * d_t(w) * isum[w, r, t]  -  sz[w, r] * dsum_t(w)
//
// The window bounds the int32 sums: window * max|code| * 32767 < 2^31 (the
// including unit picks it per format). Include inside the unit's anonymous
// namespace (the flags it is compiled with are AVX-512's).
#pragma once

constexpr int kPanelRows = 32;  // two zmm of int32 lanes
constexpr int kPanelTokens = 6; // 12 int32 + 12 f32 accumulators

// w[p * kPanelRows + r]: row r's codes 2p and 2p + 1; s / sz[i * kPanelRows + r]: its
// scale and offset for window i. Rows past those decoded are zero.
struct Panel {
  int64_t n = 0;
  int64_t window = 32;
  std::vector<int32_t> w;
  std::vector<float> s, sz;

  // For `rows` rows of n inputs: the caller then writes every entry of those
  // rows, so only the rows past them are cleared (the last panel of a matrix).
  void reset(int64_t n_in, int64_t win, int rows) {
    n = n_in;
    window = win;
    w.resize(static_cast<size_t>(n / 2 * kPanelRows));
    s.resize(static_cast<size_t>(n / window * kPanelRows));
    sz.resize(s.size());
    if (rows == kPanelRows) return;
    for (size_t i = 0; i < w.size(); i += kPanelRows) std::fill(w.begin() + i + rows, w.begin() + i + kPanelRows, 0);
    for (size_t i = 0; i < s.size(); i += kPanelRows) {
      std::fill(s.begin() + i + rows, s.begin() + i + kPanelRows, 0.0f);
      std::fill(sz.begin() + i + rows, sz.begin() + i + kPanelRows, 0.0f);
    }
  }
  // Row r's codes k .. k + 31 (32 int16, element order) into place.
  void put_codes(int r, int64_t k, __m512i codes) {
    alignas(64) int32_t pairs[16];
    _mm512_store_si512(pairs, codes);
    int32_t* dst = w.data() + (k / 2) * kPanelRows + r;
    for (int j = 0; j < 16; ++j) dst[j * kPanelRows] = pairs[j];
  }
  // Codes k .. k + 31 of all 32 rows (rows[r]: row r's 32 int16, element order; zero past the
  // rows decoded) into place: two 16 x 16 transposes of their int32 pairs in registers, then full
  // stores, instead of 16 scattered 4-byte stores per row.
  void put_rows(int64_t k, const __m512i* rows) {
    int32_t* dst = w.data() + (k / 2) * kPanelRows;
    for (int half = 0; half < 2; ++half) {
      __m512i v[16];
      transpose16(rows + 16 * half, v);
      for (int j = 0; j < 16; ++j) _mm512_storeu_si512(dst + j * kPanelRows + 16 * half, v[j]);
    }
  }
  // out[j][i] = a[i][j] for 16 vectors of 16 int32: 32-bit and 64-bit interleaves within the
  // 128-bit lanes, then a 4 x 4 transpose of the lanes.
  static void transpose16(const __m512i* a, __m512i* out) {
    __m512i b[16], c[16];
    for (int i = 0; i < 16; i += 2) {
      b[i] = _mm512_unpacklo_epi32(a[i], a[i + 1]);
      b[i + 1] = _mm512_unpackhi_epi32(a[i], a[i + 1]);
    }
    // c[4q + m], lane L: rows 4q .. 4q + 3 at column 4L + m.
    for (int q = 0; q < 4; ++q) {
      const __m512i* bq = b + 4 * q;
      c[4 * q + 0] = _mm512_unpacklo_epi64(bq[0], bq[2]);
      c[4 * q + 1] = _mm512_unpackhi_epi64(bq[0], bq[2]);
      c[4 * q + 2] = _mm512_unpacklo_epi64(bq[1], bq[3]);
      c[4 * q + 3] = _mm512_unpackhi_epi64(bq[1], bq[3]);
    }
    for (int m = 0; m < 4; ++m) {
      const __m512i d0 = _mm512_shuffle_i32x4(c[m], c[4 + m], 0x44), d1 = _mm512_shuffle_i32x4(c[m], c[4 + m], 0xEE);
      const __m512i d2 = _mm512_shuffle_i32x4(c[8 + m], c[12 + m], 0x44), d3 = _mm512_shuffle_i32x4(c[8 + m], c[12 + m], 0xEE);
      out[m] = _mm512_shuffle_i32x4(d0, d2, 0x88);
      out[4 + m] = _mm512_shuffle_i32x4(d0, d2, 0xDD);
      out[8 + m] = _mm512_shuffle_i32x4(d1, d3, 0x88);
      out[12 + m] = _mm512_shuffle_i32x4(d1, d3, 0xDD);
    }
  }
  void put_scale(int r, int64_t win, float scale, float offset) {
    s[win * kPanelRows + r] = scale;
    sz[win * kPanelRows + r] = offset;
  }
};

// Acts gives, for token t and window i: pairs(t, i) (the window's first 16-bit
// activation, the rest following), d(t, i) and dsum(t, i) (d times the sum of
// the window's activations).
//
// Tokens [t0, t0 + T) over windows [i0, i1): y starts from zero when i0 is 0,
// else from what the earlier windows left there.
template <int T, bool kOffsets, class Acts>
void panel_tile(const Panel& p, const Acts& x, int64_t t0, int64_t i0, int64_t i1, float* y, int64_t y_stride,
                __mmask16 m0, __mmask16 m1) {
  __m512 f0[T], f1[T];
  for (int t = 0; t < T; ++t) {
    float* yt = y + (t0 + t) * y_stride;
    f0[t] = i0 == 0 ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m0, yt);
    f1[t] = i0 == 0 ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m1, yt + 16);
  }
  const int64_t half = p.window / 2;
  for (int64_t i = i0; i < i1; ++i) {
    const int16_t* xq[T];
    for (int t = 0; t < T; ++t) xq[t] = x.pairs(t0 + t, i);
    const int32_t* w = p.w.data() + i * half * kPanelRows;
    __m512i a0[T], a1[T];
    for (int t = 0; t < T; ++t) a0[t] = a1[t] = _mm512_setzero_si512();
    for (int64_t k = 0; k < half; ++k, w += kPanelRows) {
      const __m512i w0 = _mm512_loadu_si512(w), w1 = _mm512_loadu_si512(w + 16);
      for (int t = 0; t < T; ++t) {
        int32_t pair;
        std::memcpy(&pair, xq[t] + 2 * k, sizeof pair);
        const __m512i xb = _mm512_set1_epi32(pair);
        a0[t] = _mm512_dpwssd_epi32(a0[t], w0, xb);
        a1[t] = _mm512_dpwssd_epi32(a1[t], w1, xb);
      }
    }
    const float* s = p.s.data() + i * kPanelRows;
    const __m512 s0 = _mm512_loadu_ps(s), s1 = _mm512_loadu_ps(s + 16);
    for (int t = 0; t < T; ++t) {
      const __m512 d = _mm512_set1_ps(x.d(t0 + t, i));
      f0[t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(a0[t]), s0), d, f0[t]);
      f1[t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(a1[t]), s1), d, f1[t]);
    }
    if constexpr (kOffsets) {
      const float* sz = p.sz.data() + i * kPanelRows;
      const __m512 z0 = _mm512_loadu_ps(sz), z1 = _mm512_loadu_ps(sz + 16);
      for (int t = 0; t < T; ++t) {
        const __m512 e = _mm512_set1_ps(x.dsum(t0 + t, i));
        f0[t] = _mm512_fnmadd_ps(z0, e, f0[t]);
        f1[t] = _mm512_fnmadd_ps(z1, e, f1[t]);
      }
    }
  }
  for (int t = 0; t < T; ++t) {
    _mm512_mask_storeu_ps(y + (t0 + t) * y_stride, m0, f0[t]);
    _mm512_mask_storeu_ps(y + (t0 + t) * y_stride + 16, m1, f1[t]);
  }
}

// Inputs are taken about 1024 at a time, so that the panel's slice (64 KB) and six
// tokens' activations (12 KB) stay in L1/L2 while every token passes over them.
constexpr int64_t kPanelChunk = 1024;

// y[t * y_stride + r] for the panel's first `rows` rows and tokens [0, n_tokens).
template <bool kOffsets, class Acts>
void panel_gemm(const Panel& p, const Acts& x, int rows, int64_t n_tokens, float* y, int64_t y_stride) {
  const __mmask16 m0 = static_cast<__mmask16>(rows >= 16 ? 0xFFFF : (1u << rows) - 1);
  const __mmask16 m1 = static_cast<__mmask16>(rows >= 32 ? 0xFFFF : rows <= 16 ? 0 : (1u << (rows - 16)) - 1);
  const int64_t n_windows = p.n / p.window, chunk = std::max<int64_t>(1, kPanelChunk / p.window);
  for (int64_t i0 = 0; i0 < n_windows; i0 += chunk) {
    const int64_t i1 = std::min(n_windows, i0 + chunk);
    int64_t t = 0;
    for (; t + kPanelTokens <= n_tokens; t += kPanelTokens)
      panel_tile<kPanelTokens, kOffsets>(p, x, t, i0, i1, y, y_stride, m0, m1);
    switch (n_tokens - t) {
      case 5: panel_tile<5, kOffsets>(p, x, t, i0, i1, y, y_stride, m0, m1); break;
      case 4: panel_tile<4, kOffsets>(p, x, t, i0, i1, y, y_stride, m0, m1); break;
      case 3: panel_tile<3, kOffsets>(p, x, t, i0, i1, y, y_stride, m0, m1); break;
      case 2: panel_tile<2, kOffsets>(p, x, t, i0, i1, y, y_stride, m0, m1); break;
      case 1: panel_tile<1, kOffsets>(p, x, t, i0, i1, y, y_stride, m0, m1); break;
      default: break;
    }
  }
}
