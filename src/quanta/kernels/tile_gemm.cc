// The pool-level packing of tile_gemm.h (the ISA code is in x86/tile_gemm_amx.cc).
#include "quanta/kernels/tile_gemm.h"

#include "quanta/core/thread_pool.h"

namespace quanta::kernels {

std::vector<uint8_t> tile_pack_bf16(const float* x, int64_t ldx, int64_t n_tokens, int64_t k, bool split,
                                    ThreadPool& pool) {
  std::vector<uint8_t> packed(static_cast<size_t>(tile_packed_bytes(n_tokens, k, 2) * (split ? 2 : 1)));
  pool.parallel_for((n_tokens + 15) / 16, 1, [&](int64_t b0, int64_t b1) {
    tile_pack_bf16(x, ldx, n_tokens, k, split, b0, b1, packed.data());
  });
  return packed;
}

std::vector<uint8_t> tile_pack_s8(const int8_t* x, int64_t ldx, int64_t n_tokens, int64_t k, ThreadPool& pool) {
  std::vector<uint8_t> packed(static_cast<size_t>(tile_packed_bytes(n_tokens, k, 1)));
  pool.parallel_for((n_tokens + 15) / 16, 1, [&](int64_t b0, int64_t b1) {
    tile_pack_s8(x, ldx, n_tokens, k, b0, b1, packed.data());
  });
  return packed;
}

}  // namespace quanta::kernels
