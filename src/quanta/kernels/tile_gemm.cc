// The pool-level packing of tile_gemm.h (the ISA code is in x86/tile_gemm_amx.cc).
#include "quanta/kernels/tile_gemm.h"

#include "quanta/core/thread_pool.h"

namespace quanta::kernels {

TileVector<uint8_t> tile_pack_bf16(const float* x, int64_t ldx, int64_t n_tokens, int64_t k, bool split,
                                   ThreadPool& pool) {
  TileVector<uint8_t> packed(static_cast<size_t>(tile_packed_bytes(n_tokens, k, 2) * (split ? 2 : 1)));
  pool.parallel_for((n_tokens + 15) / 16, 1, [&](int64_t b0, int64_t b1) {
    tile_pack_bf16(x, ldx, n_tokens, k, split, b0, b1, packed.data());
  });
  return packed;
}

TileVector<uint8_t> tile_pack_s8(const int8_t* x, int64_t ldx, int64_t n_tokens, int64_t k, ThreadPool& pool) {
  TileVector<uint8_t> packed(static_cast<size_t>(tile_packed_bytes(n_tokens, k, 1)));
  pool.parallel_for((n_tokens + 15) / 16, 1, [&](int64_t b0, int64_t b1) {
    tile_pack_s8(x, ldx, n_tokens, k, b0, b1, packed.data());
  });
  return packed;
}

void tile_gemm_decoded(const float* x, int64_t n_tokens, int64_t k, int64_t n_out, bool split_x, bool split_w,
                       const TileDecodeFn& decode, float* y, ThreadPool& pool) {
  const TileVector<uint8_t> xp = tile_pack_bf16(x, k, n_tokens, k, split_x, pool);
  auto trampoline = [](const void* ctx, int64_t n, int64_t rows, int64_t k0, int64_t len, float* out) {
    (*static_cast<const TileDecodeFn*>(ctx))(n, rows, k0, len, out);
  };
  pool.parallel_for(n_out, 32, [&](int64_t begin, int64_t end) {
    TileGemmArgs a{xp.data(), n_tokens, k, nullptr, 0, begin, end, y + begin, n_out};
    if (split_w) a = tile_terms_wsplit_xsplit(a, 0);
    else if (split_x) a = tile_terms_w_xsplit(a);
    a.decode = trampoline;
    a.decode_ctx = &decode;
    tile_gemm_bf16(a);
  });
}

}  // namespace quanta::kernels
