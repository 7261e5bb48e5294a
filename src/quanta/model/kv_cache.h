// Paged key/value cache.
//
// A KvPool holds the keys and values of every sequence in fixed-size blocks of
// block_size token positions, per layer [n_blocks, n_kv_heads, block_size, d_head]
// f32. A sequence owns a block table (KvSequence): position j lives in block
// blocks[j / block_size] at slot j % block_size. Blocks are reference counted so
// a prefix cache can share the full blocks of a common prompt prefix between
// sequences; a sequence only ever writes into its last, unshared block.
#pragma once

#include <cstdint>
#include <vector>

#include "quanta/core/tensor.h"

namespace quanta::model {

class KvPool {
 public:
  KvPool(int64_t n_layers, int64_t n_kv_heads, int64_t d_head, int64_t block_size, int64_t n_blocks);

  int64_t block_size() const { return block_size_; }
  int64_t n_blocks() const { return static_cast<int64_t>(refcount_.size()); }
  int64_t n_free() const { return static_cast<int64_t>(free_.size()); }
  int64_t n_kv_heads() const { return n_kv_heads_; }
  int64_t d_head() const { return d_head_; }
  size_t bytes() const;

  // A free block with reference count 1, or -1 when the pool is exhausted.
  int32_t allocate();
  void retain(int32_t block);
  // Drops one reference; the block is free again at zero.
  void release(int32_t block);
  int refcount(int32_t block) const { return refcount_[static_cast<size_t>(block)]; }

  float* k(int64_t layer) { return k_[static_cast<size_t>(layer)].data_mut<float>(); }
  float* v(int64_t layer) { return v_[static_cast<size_t>(layer)].data_mut<float>(); }
  const float* k(int64_t layer) const { return k_[static_cast<size_t>(layer)].data<float>(); }
  const float* v(int64_t layer) const { return v_[static_cast<size_t>(layer)].data<float>(); }

 private:
  int64_t n_kv_heads_, d_head_, block_size_;
  std::vector<Tensor> k_, v_;  // per layer [n_blocks, n_kv_heads, block_size, d_head]
  std::vector<int> refcount_;
  std::vector<int32_t> free_;
};

struct KvSequence {
  std::vector<int32_t> blocks;  // block table
  int64_t n_tokens = 0;         // positions filled
};

// Adds blocks so `seq` can take n_more tokens. Returns false, changing nothing,
// when the pool has too few free blocks.
bool kv_reserve(KvPool& pool, KvSequence& seq, int64_t n_more);
// Releases every block of `seq` and empties it.
void kv_release(KvPool& pool, KvSequence& seq);

}  // namespace quanta::model
