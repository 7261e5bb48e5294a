// Prefix cache over the paged KV pool, in the spirit of SGLang's RadixAttention.
//
// A tree keyed by blocks of block_size tokens: each node is one full KV block
// whose keys and values were computed for exactly the tokens on the path from
// the root. A new request reuses the longest cached prefix of its prompt by
// sharing those blocks (reference counted in the pool) instead of recomputing
// them. Only full blocks are cached, so a sequence never writes into a shared
// block. When the pool runs short, leaves that no sequence uses are evicted,
// least recently used first.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "quanta/model/kv_cache.h"

namespace quanta::engine {

class RadixCache {
 public:
  explicit RadixCache(model::KvPool& pool) : pool_(pool), root_(std::make_unique<Node>()) {}
  ~RadixCache();

  // The blocks of the longest cached prefix of tokens[0, max_tokens), retained
  // for the caller (who releases them with the sequence).
  std::vector<int32_t> match(const std::vector<int32_t>& tokens, int64_t max_tokens);

  // Caches the full blocks of a sequence whose first n_tokens tokens are `tokens`
  // and whose KV sits in `blocks`. Blocks already cached are left as they are.
  void insert(const std::vector<int32_t>& tokens, int64_t n_tokens, const std::vector<int32_t>& blocks);

  // Frees up to n blocks held only by the cache, least recently used leaves
  // first. Returns how many were freed.
  int64_t evict(int64_t n);

  // Drops every block the cache holds alone (POST /flush_cache).
  void clear() { evict(INT64_MAX); }

  int64_t n_cached_blocks() const { return n_nodes_; }

 private:
  struct Node {
    std::map<std::vector<int32_t>, std::unique_ptr<Node>> children;  // key: the block's tokens
    Node* parent = nullptr;
    const std::vector<int32_t>* key = nullptr;  // points into parent's map
    int32_t block = -1;
    uint64_t last_used = 0;
  };

  model::KvPool& pool_;
  std::unique_ptr<Node> root_;
  uint64_t clock_ = 0;
  int64_t n_nodes_ = 0;
};

}  // namespace quanta::engine
