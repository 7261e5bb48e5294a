// Prefix cache over the paged KV pool, in the spirit of SGLang's RadixAttention.
//
// A tree keyed by blocks of block_size tokens: each node is one full KV block
// whose keys and values were computed for exactly the tokens on the path from
// the root. A new request reuses the longest cached prefix of its prompt by
// sharing those blocks (reference counted in the pool) instead of recomputing
// them. Only full blocks are cached, so a sequence never writes into a shared
// block. When the pool runs short, leaves that no sequence uses are evicted,
// least recently used first.
//
// Invariants: a node is "locked" while a sequence shares its block (pool
// refcount > 1). Unlocked leaves sit in an index ordered by last use, so
// eviction takes O(log n) per block. The index only stays right if every
// release of a block that match() handed out, or that insert() cached, goes
// through release() below rather than straight to the pool.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "quanta/model/kv_cache.h"

namespace quanta::engine {

class RadixCache {
 public:
  explicit RadixCache(model::KvPool& pool);
  ~RadixCache();

  // The blocks of the longest cached prefix of tokens[0, max_tokens), retained
  // for the caller (who gives them back with release()).
  std::vector<int32_t> match(const std::vector<int32_t>& tokens, int64_t max_tokens);

  // Caches the full blocks of a sequence whose first n_tokens tokens are `tokens`
  // and whose KV sits in `blocks`. Blocks already cached are left as they are.
  void insert(const std::vector<int32_t>& tokens, int64_t n_tokens, const std::vector<int32_t>& blocks);

  // Releases every block of a sequence (as model::kv_release) and marks the
  // cached ones no longer shared as evictable.
  void release(model::KvSequence& seq);

  // Frees up to n blocks held only by the cache, least recently used leaves
  // first. Returns how many were freed.
  int64_t evict(int64_t n);

  // Drops every block the cache holds alone (POST /flush_cache).
  void clear() { evict(INT64_MAX); }

  int64_t n_cached_blocks() const { return n_nodes_; }
  // Leaves that evict() could free right now.
  int64_t n_evictable() const { return static_cast<int64_t>(evictable_.size()); }

 private:
  struct Node {
    std::map<std::vector<int32_t>, std::unique_ptr<Node>> children;  // key: the block's tokens
    Node* parent = nullptr;
    const std::vector<int32_t>* key = nullptr;  // points into parent's map
    int32_t block = -1;
    uint64_t last_used = 0;
    uint64_t id = 0;          // creation order: ties in last_used evict the older node first
    bool evictable = false;   // in evictable_
  };
  using LruKey = std::pair<uint64_t, uint64_t>;  // (last_used, id)

  void touch(Node* n);            // marks n used now, keeping the index ordered
  void update_evictable(Node* n);  // puts n in or out of the index by its current state
  void drop_evictable(Node* n);

  model::KvPool& pool_;
  std::unique_ptr<Node> root_;
  std::vector<Node*> node_of_block_;  // block id -> its node, or nullptr if not cached
  std::map<LruKey, Node*> evictable_;  // unlocked leaves, least recently used first
  uint64_t clock_ = 0;
  uint64_t next_id_ = 0;
  int64_t n_nodes_ = 0;
};

}  // namespace quanta::engine
