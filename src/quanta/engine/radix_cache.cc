#include "quanta/engine/radix_cache.h"

#include <algorithm>
#include <functional>

namespace quanta::engine {

RadixCache::RadixCache(model::KvPool& pool)
    : pool_(pool), root_(std::make_unique<Node>()), node_of_block_(static_cast<size_t>(pool.n_blocks()), nullptr) {}

RadixCache::~RadixCache() {
  // Return every block the cache holds, whether or not sequences still share it.
  std::function<void(Node*)> drop = [&](Node* n) {
    for (auto& [key, child] : n->children) {
      drop(child.get());
      pool_.release(child->block);
    }
  };
  drop(root_.get());
}

void RadixCache::drop_evictable(Node* n) {
  if (!n->evictable) return;
  evictable_.erase({n->last_used, n->id});
  n->evictable = false;
}

void RadixCache::update_evictable(Node* n) {
  const bool want = n != root_.get() && n->children.empty() && pool_.refcount(n->block) == 1;
  if (want == n->evictable) return;
  if (want) {
    evictable_.emplace(LruKey{n->last_used, n->id}, n);
    n->evictable = true;
  } else {
    drop_evictable(n);
  }
}

void RadixCache::touch(Node* n) {
  const bool was = n->evictable;
  drop_evictable(n);
  n->last_used = clock_;
  if (was) update_evictable(n);
}

std::vector<int32_t> RadixCache::match(const std::vector<int32_t>& tokens, int64_t max_tokens) {
  const int64_t bs = pool_.block_size();
  std::vector<int32_t> blocks;
  Node* node = root_.get();
  ++clock_;
  std::vector<int32_t> key(static_cast<size_t>(bs));
  for (int64_t start = 0; start + bs <= max_tokens; start += bs) {
    std::copy(tokens.begin() + start, tokens.begin() + start + bs, key.begin());
    auto it = node->children.find(key);
    if (it == node->children.end()) break;
    node = it->second.get();
    drop_evictable(node);  // locked now: the caller shares its block
    node->last_used = clock_;
    pool_.retain(node->block);
    blocks.push_back(node->block);
  }
  return blocks;
}

void RadixCache::insert(const std::vector<int32_t>& tokens, int64_t n_tokens, const std::vector<int32_t>& blocks) {
  const int64_t bs = pool_.block_size();
  Node* node = root_.get();
  ++clock_;
  for (int64_t b = 0; (b + 1) * bs <= n_tokens && b < static_cast<int64_t>(blocks.size()); ++b) {
    std::vector<int32_t> key(tokens.begin() + b * bs, tokens.begin() + (b + 1) * bs);
    auto it = node->children.find(key);
    if (it == node->children.end()) {
      auto child = std::make_unique<Node>();
      child->parent = node;
      child->block = blocks[static_cast<size_t>(b)];
      child->id = next_id_++;
      child->last_used = clock_;
      pool_.retain(child->block);
      it = node->children.emplace(std::move(key), std::move(child)).first;
      it->second->key = &it->first;
      node_of_block_[static_cast<size_t>(it->second->block)] = it->second.get();
      ++n_nodes_;
      drop_evictable(node);  // no longer a leaf
    }
    node = it->second.get();
    touch(node);
    update_evictable(node);
  }
}

void RadixCache::release(model::KvSequence& seq) {
  for (int32_t b : seq.blocks) {
    pool_.release(b);
    if (Node* n = node_of_block_[static_cast<size_t>(b)]) update_evictable(n);
  }
  seq.blocks.clear();
  seq.n_tokens = 0;
}

int64_t RadixCache::evict(int64_t n) {
  int64_t freed = 0;
  while (freed < n && !evictable_.empty()) {
    Node* victim = evictable_.begin()->second;
    drop_evictable(victim);
    if (pool_.refcount(victim->block) != 1) continue;  // shared behind release()'s back: keep it
    Node* parent = victim->parent;
    node_of_block_[static_cast<size_t>(victim->block)] = nullptr;
    pool_.release(victim->block);
    parent->children.erase(*victim->key);  // destroys victim
    --n_nodes_;
    ++freed;
    update_evictable(parent);  // it may have become an unlocked leaf
  }
  return freed;
}

}  // namespace quanta::engine
