#include "quanta/model/kv_cache.h"

#include "quanta/core/error.h"

namespace quanta::model {

KvPool::KvPool(int64_t n_layers, int64_t n_kv_heads, int64_t d_head, int64_t block_size, int64_t n_blocks)
    : n_kv_heads_(n_kv_heads), d_head_(d_head), block_size_(block_size) {
  QUANTA_ASSERT(block_size > 0 && n_blocks >= 0);
  for (int64_t l = 0; l < n_layers; ++l) {
    k_.push_back(Tensor::zeros(DType::kF32, {n_blocks, n_kv_heads, block_size, d_head}));
    v_.push_back(Tensor::zeros(DType::kF32, {n_blocks, n_kv_heads, block_size, d_head}));
  }
  refcount_.assign(static_cast<size_t>(n_blocks), 0);
  // Hand out low block numbers first.
  for (int64_t b = n_blocks - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
}

size_t KvPool::bytes() const {
  size_t n = 0;
  for (const auto& t : k_) n += t.nbytes();
  for (const auto& t : v_) n += t.nbytes();
  return n;
}

int32_t KvPool::allocate() {
  if (free_.empty()) return -1;
  int32_t b = free_.back();
  free_.pop_back();
  refcount_[static_cast<size_t>(b)] = 1;
  return b;
}

void KvPool::retain(int32_t block) {
  QUANTA_ASSERT(refcount_[static_cast<size_t>(block)] > 0);
  ++refcount_[static_cast<size_t>(block)];
}

void KvPool::release(int32_t block) {
  int& rc = refcount_[static_cast<size_t>(block)];
  QUANTA_ASSERT(rc > 0);
  if (--rc == 0) free_.push_back(block);
}

bool kv_reserve(KvPool& pool, KvSequence& seq, int64_t n_more) {
  const int64_t bs = pool.block_size();
  const int64_t need = (seq.n_tokens + n_more + bs - 1) / bs - static_cast<int64_t>(seq.blocks.size());
  if (need <= 0) return true;
  if (need > pool.n_free()) return false;
  for (int64_t i = 0; i < need; ++i) seq.blocks.push_back(pool.allocate());
  return true;
}

void kv_release(KvPool& pool, KvSequence& seq) {
  for (int32_t b : seq.blocks) pool.release(b);
  seq.blocks.clear();
  seq.n_tokens = 0;
}

}  // namespace quanta::model
