// The int8 x int8 GEMM of gemm_s8 (quant_linear.h) for the x86 tiers, written once:
// included inside the anonymous namespace of quant_linear_avx2.cc and
// quant_linear_avx512.cc after their Dot policy, which gives
//   Dot::acc(acc, |w| as u8, w, x): acc + the 8 int32 sums of w * x over 32 bytes
//                                   (the sign of w moved onto x by _mm256_sign_epi8), and
//   Dot::prefetch(p): a hint for the weight stream at p.
// and hsum_epi32.
#pragma once

// Tokens [t_begin, t_end) of gemm_s8.
template <class Dot>
void gemm_s8_tokens(const GemmS8Args& a, int64_t t_begin, int64_t t_end) {
  const int64_t k32 = a.k & ~int64_t{31};
  int64_t n = a.n0;
  // 4 weight rows x 2 tokens per step: each weight load serves two tokens and
  // each activation load four rows.
  for (; n + 4 <= a.n1; n += 4) {
    // Row r's 32 bytes at column k: wr[r] + k * ks (rows packed by pack_rows4
    // sit 32 bytes apart and advance 128 bytes per 32 columns).
    const bool packed = n < a.rows4;
    const int64_t ks = packed ? 4 : 1;
    const int8_t* wr4[4];
    for (int r = 0; r < 4; ++r) wr4[r] = packed ? a.w + n * a.ldw + r * 32 : a.w + (n + r) * a.ldw;
    int64_t t = t_begin;
    for (; t + 2 <= t_end; t += 2) {
      const bool two = true;
      const int8_t* x0 = a.x + t * a.ldx;
      const int8_t* x1 = two ? x0 + a.ldx : x0;
      __m256i acc[2][4];
      for (auto& r : acc)
        for (auto& c : r) c = _mm256_setzero_si256();
      for (int64_t k = 0; k < k32; k += 32) {
        for (int r = 0; r < 4; ++r) Dot::prefetch(wr4[r] + k * ks);
        const __m256i xa = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x0 + k));
        const __m256i xb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x1 + k));
        for (int r = 0; r < 4; ++r) {
          const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wr4[r] + k * ks));
          const __m256i uw = _mm256_sign_epi8(w, w);
          acc[0][r] = Dot::acc(acc[0][r], uw, w, xa);
          acc[1][r] = Dot::acc(acc[1][r], uw, w, xb);
        }
      }
      for (int r = 0; r < 4; ++r) {
        int32_t s0 = hsum_epi32(acc[0][r]), s1 = hsum_epi32(acc[1][r]);
        const int8_t* wr = wr4[r];  // a tail only exists for plain rows
        for (int64_t k = k32; k < a.k; ++k) {
          s0 += int32_t{x0[k]} * wr[k];
          s1 += int32_t{x1[k]} * wr[k];
        }
        a.out[t * a.ld_out + (n + r - a.n0)] = s0;
        if (two) a.out[(t + 1) * a.ld_out + (n + r - a.n0)] = s1;
      }
    }
    if (t < t_end) {  // the last token of an odd count (decode: the only one)
      const int8_t* x0 = a.x + t * a.ldx;
      __m256i acc[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                        _mm256_setzero_si256()};
      for (int64_t k = 0; k < k32; k += 32) {
        for (int r = 0; r < 4; ++r) Dot::prefetch(wr4[r] + k * ks);
        const __m256i xa = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x0 + k));
        for (int r = 0; r < 4; ++r) {
          const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wr4[r] + k * ks));
          acc[r] = Dot::acc(acc[r], _mm256_sign_epi8(w, w), w, xa);
        }
      }
      for (int r = 0; r < 4; ++r) {
        int32_t s0 = hsum_epi32(acc[r]);
        const int8_t* wr = wr4[r];
        for (int64_t k = k32; k < a.k; ++k) s0 += int32_t{x0[k]} * wr[k];
        a.out[t * a.ld_out + (n + r - a.n0)] = s0;
      }
    }
  }
  for (; n < a.n1; ++n) {
    const bool packed = n < a.rows4;  // a range that ends inside a packed group
    const int8_t* wr = packed ? a.w + (n & ~int64_t{3}) * a.ldw + (n & 3) * 32 : a.w + n * a.ldw;
    const int64_t ks = packed ? 4 : 1;
    for (int64_t t = t_begin; t < t_end; ++t) {
      const int8_t* xr = a.x + t * a.ldx;
      __m256i acc = _mm256_setzero_si256();
      for (int64_t k = 0; k < k32; k += 32) {
        const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wr + k * ks));
        const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xr + k));
        acc = Dot::acc(acc, _mm256_sign_epi8(w, w), w, x);
      }
      int32_t s = hsum_epi32(acc);
      for (int64_t k = k32; k < a.k; ++k) s += int32_t{xr[k]} * wr[k];
      a.out[t * a.ld_out + (n - a.n0)] = s;
    }
  }
}

// Tokens in blocks whose activations fit L2 (48 x 2048 bytes), so each 4-row
// weight tile meets a whole block from cache instead of streaming all tokens.
template <class Dot>
void gemm_s8_blocks(const GemmS8Args& a) {
  constexpr int64_t kTokenBlock = 48;
  for (int64_t t0 = 0; t0 < a.n_tokens; t0 += kTokenBlock)
    gemm_s8_tokens<Dot>(a, t0, std::min(a.n_tokens, t0 + kTokenBlock));
}

