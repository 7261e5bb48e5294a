#include "quanta/engine/radix_cache.h"

#include <algorithm>
#include <functional>

namespace quanta::engine {

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
      pool_.retain(child->block);
      it = node->children.emplace(std::move(key), std::move(child)).first;
      it->second->key = &it->first;
      ++n_nodes_;
    }
    node = it->second.get();
    node->last_used = clock_;
  }
}

int64_t RadixCache::evict(int64_t n) {
  int64_t freed = 0;
  while (freed < n) {
    // The least recently used leaf whose block no sequence shares.
    Node* victim = nullptr;
    std::function<void(Node*)> scan = [&](Node* node) {
      for (auto& [key, child] : node->children) {
        if (child->children.empty()) {
          if (pool_.refcount(child->block) == 1 && (!victim || child->last_used < victim->last_used))
            victim = child.get();
        } else {
          scan(child.get());
        }
      }
    };
    scan(root_.get());
    if (!victim) break;
    pool_.release(victim->block);
    victim->parent->children.erase(*victim->key);
    --n_nodes_;
    ++freed;
  }
  return freed;
}

}  // namespace quanta::engine
