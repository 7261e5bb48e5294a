// AMX tile GEMMs for many tokens (prompts, batched decoding):
//   out[t, n] = sum_k x[t, k] * w[n, k],  t < n_tokens, n in [n0, n1).
//
// The weights are the tiles' A operand, read in place: 16 rows of 64 bytes per
// tile, straight from a row-major [n_out, k] matrix (a checkpoint's bf16 or int8
// weight, or a tile of rows dequantized to bf16), so nothing is repacked at load
// and memory stays the mapped file. The activations are the B operand, which AMX
// wants as pairs (bf16) or quads (int8) of k side by side for 16 tokens: they are
// packed once per forward call (tile_pack_*), in blocks of 16 tokens and 64 bytes
// of k, zero-padded, and every thread reads the same packed copy.
//
// bf16: products of bf16 are exact in f32 and summed in f32. Rounding an
// operand to bf16 (8 significant bits) would cost the model about 0.5% of
// relative error in its logits, so an f32 operand is split into two bf16 parts,
// v = hi + lo with lo = bf16(v - hi) (16 significant bits, relative error
// 2^-17), and the GEMM sums the products of parts it is given as terms:
// bf16 weights against split activations are two terms (W hi + W lo),
// f32-decoded weights split too three (Whi xhi + Whi xlo + Wlo xhi).
// int8: signed x signed (tdpbssd), exact in int32.
// Only for Isa::kAmx (tiles_usable); each call loads the tile configuration
// itself, so any thread may call.
#pragma once

#include <cstdint>
#include <functional>
#include <new>
#include <vector>

#include "quanta/kernels/kernels.h"

namespace quanta {
class ThreadPool;
}

namespace quanta::kernels {

inline bool tiles_usable(Isa isa) { return isa == Isa::kAmx; }

// Tile rows are 64 bytes: buffers that tiles load from start on a cache line,
// or every tile row straddles two lines (measured: 2.4x slower tile products).
template <class T>
struct CacheLineAllocator {
  using value_type = T;
  CacheLineAllocator() = default;
  template <class U>
  CacheLineAllocator(const CacheLineAllocator<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{64})); }
  void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t{64}); }
  bool operator==(const CacheLineAllocator&) const { return true; }
};
template <class T>
using TileVector = std::vector<T, CacheLineAllocator<T>>;

// Batches of at least this many tokens take the tiles (fewer fill too little of
// a 16-token tile to beat the vector kernels).
constexpr int64_t kTileMinTokens = 8;

// Bytes of the packed activations of n_tokens tokens with k elements of
// elem_bytes (2 for bf16, 1 for int8): 16-token blocks x 64-byte chunks of 1 KB.
int64_t tile_packed_bytes(int64_t n_tokens, int64_t k, int elem_bytes);

// Packs token blocks [tb0, tb1) (block b = tokens 16b .. 16b+15) of x [n_tokens, ldx]
// into `packed`, so threads can pack blocks in parallel. bf16 with split: the hi
// parts, then the lo parts at packed + tile_packed_bytes(n_tokens, k, 2).
void tile_pack_bf16(const float* x, int64_t ldx, int64_t n_tokens, int64_t k, bool split, int64_t tb0, int64_t tb1,
                    uint8_t* packed);
void tile_pack_s8(const int8_t* x, int64_t ldx, int64_t n_tokens, int64_t k, int64_t tb0, int64_t tb1,
                  uint8_t* packed);

// The whole of x [n_tokens, ldx] packed, token blocks split over the pool.
TileVector<uint8_t> tile_pack_bf16(const float* x, int64_t ldx, int64_t n_tokens, int64_t k, bool split,
                                   ThreadPool& pool);
TileVector<uint8_t> tile_pack_s8(const int8_t* x, int64_t ldx, int64_t n_tokens, int64_t k, ThreadPool& pool);

// A product of weight part `w` (0: w, 1: w + w_part_bytes) with activation part `x` (0: hi, 1: lo).
struct TileTerm {
  uint8_t w, x;
};

struct TileGemmArgs {
  const uint8_t* x;  // packed activations
  int64_t n_tokens;
  int64_t k;         // elements per row
  const void* w;     // rows n0..n1-1 at w + n * ldw bytes (bf16 or int8)
  int64_t ldw;       // bytes
  int64_t n0, n1;
  void* out;         // f32 (bf16 GEMM) or int32 (int8 GEMM): out[t * ld_out + (n - n0)]
  int64_t ld_out;
  // bf16 only: the sum of these products (the int8 GEMM takes one part of each).
  int n_terms = 1;
  TileTerm terms[3] = {{0, 0}, {0, 0}, {0, 0}};
  int64_t w_part_bytes = 0;
  // bf16 only: weights decoded by the GEMM itself instead of read from w:
  // decode(decode_ctx, n, rows, k0, len, out) writes w[n .. n + rows, k0 .. k0 + len)
  // as f32, rows x len (k0 a multiple of 256, len of 32, rows <= 16), which the GEMM
  // rounds to bf16, or splits into the two weight parts when there are 3 terms.
  // Each block is decoded once per chunk of tokens, straight into the L1-resident
  // buffer the tiles load from.
  void (*decode)(const void* ctx, int64_t n, int64_t rows, int64_t k0, int64_t len, float* out) = nullptr;
  const void* decode_ctx = nullptr;
};
void tile_gemm_bf16(const TileGemmArgs& a);
void tile_gemm_s8(const TileGemmArgs& a);

// Two-term args: bf16 weights against split activations.
inline TileGemmArgs tile_terms_w_xsplit(TileGemmArgs a) {
  a.n_terms = 2;
  a.terms[0] = {0, 0};
  a.terms[1] = {0, 1};
  return a;
}
// Three-term args: split weights (hi rows, then lo rows w_part_bytes later) against split activations.
// (Ordered so that the two terms with the activations' hi part follow each other.)
inline TileGemmArgs tile_terms_wsplit_xsplit(TileGemmArgs a, int64_t w_part_bytes) {
  a.n_terms = 3;
  a.terms[0] = {0, 0};
  a.terms[1] = {1, 0};
  a.terms[2] = {0, 1};
  a.w_part_bytes = w_part_bytes;
  return a;
}

// y[t, n] (ldy = n_out) = sum_k x[t, k] w[n, k] for weights decoded to f32 on
// the fly by decode(n, rows, k0, len, out) (see TileGemmArgs::decode), rows split over
// the pool. split_x / split_w: whether the activations / the decoded weights
// need two bf16 parts (values not exact in bf16).
using TileDecodeFn = std::function<void(int64_t n, int64_t rows, int64_t k0, int64_t len, float* out)>;
void tile_gemm_decoded(const float* x, int64_t n_tokens, int64_t k, int64_t n_out, bool split_x, bool split_w,
                       const TileDecodeFn& decode, float* y, ThreadPool& pool);

// n floats to bf16 (round to nearest even), for tiles of dequantized weights;
// with lo, also the remainders lo[i] = bf16(x[i] - hi[i]).
void tile_f32_to_bf16(const float* x, uint16_t* hi, uint16_t* lo, int64_t n);

}  // namespace quanta::kernels
