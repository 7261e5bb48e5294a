// The prefix cache's eviction order: least recently used unlocked leaf first,
// never a block a sequence still shares. The randomized test holds the indexed
// eviction to a brute-force scan of the whole tree (what eviction used to be).
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <vector>

#include "quanta/engine/radix_cache.h"

namespace quanta::engine {
namespace {

constexpr int64_t kBs = 2;  // tokens per block

model::KvPool make_pool(int64_t n_blocks) { return model::KvPool(1, 1, 1, kBs, n_blocks); }

// Runs a sequence through the cache as the scheduler does: reuse the cached
// prefix, allocate the rest, cache its full blocks, then release it.
model::KvSequence admit(RadixCache& cache, model::KvPool& pool, const std::vector<int32_t>& tokens) {
  model::KvSequence s;
  s.blocks = cache.match(tokens, static_cast<int64_t>(tokens.size()));
  s.n_tokens = static_cast<int64_t>(s.blocks.size()) * kBs;
  const int64_t pending = static_cast<int64_t>(tokens.size()) - s.n_tokens;
  if (!model::kv_reserve(pool, s, pending)) {
    cache.evict((s.n_tokens + pending + kBs - 1) / kBs - static_cast<int64_t>(s.blocks.size()) - pool.n_free());
    EXPECT_TRUE(model::kv_reserve(pool, s, pending)) << "pool too small for the test";
  }
  s.n_tokens = static_cast<int64_t>(tokens.size());
  return s;
}

void finish(RadixCache& cache, const std::vector<int32_t>& tokens, model::KvSequence& s) {
  cache.insert(tokens, s.n_tokens, s.blocks);
  cache.release(s);
}

std::vector<int32_t> run(RadixCache& cache, model::KvPool& pool, const std::vector<int32_t>& tokens) {
  model::KvSequence s = admit(cache, pool, tokens);
  std::vector<int32_t> blocks = s.blocks;
  finish(cache, tokens, s);
  return blocks;
}

TEST(RadixCache, EvictsLeastRecentlyUsedLeafFirst) {
  model::KvPool pool = make_pool(16);
  RadixCache cache(pool);
  auto a = run(cache, pool, {1, 2, 3, 4});  // [1,2] -> [3,4]
  auto b = run(cache, pool, {1, 2, 5, 6});  // shares [1,2]; adds [5,6]
  auto c = run(cache, pool, {7, 8});
  ASSERT_EQ(b[0], a[0]);
  EXPECT_EQ(cache.n_cached_blocks(), 4);
  EXPECT_EQ(cache.n_evictable(), 3);  // the leaves; [1,2] is an inner node
  run(cache, pool, {1, 2, 3, 4});    // A is the most recent again
  // Leaves by last use: [5,6] (B), [7,8] (C), [3,4] (A); then [1,2] once it is a leaf.
  for (int32_t want : {b[1], c[0], a[1], a[0]}) {
    ASSERT_EQ(pool.refcount(want), 1);
    EXPECT_EQ(cache.evict(1), 1);
    EXPECT_EQ(pool.refcount(want), 0) << "block " << want << " should have been evicted next";
  }
  EXPECT_EQ(cache.evict(1), 0);
  EXPECT_EQ(cache.n_cached_blocks(), 0);
  EXPECT_EQ(pool.n_free(), pool.n_blocks());
}

TEST(RadixCache, LockedNodesAreNeverEvicted) {
  model::KvPool pool = make_pool(16);
  RadixCache cache(pool);
  const std::vector<int32_t> t = {1, 2, 3, 4, 5, 6};
  auto blocks = run(cache, pool, t);
  model::KvSequence all;  // a running sequence sharing the whole cached path
  all.blocks = cache.match(t, 6);
  all.n_tokens = 6;
  EXPECT_EQ(all.blocks, blocks);
  EXPECT_EQ(cache.n_evictable(), 0);
  EXPECT_EQ(cache.evict(INT64_MAX), 0);
  EXPECT_EQ(cache.n_cached_blocks(), 3);
  cache.release(all);

  model::KvSequence prefix;  // shares only the first block
  prefix.blocks = cache.match(t, 2);
  prefix.n_tokens = 2;
  EXPECT_EQ(cache.evict(INT64_MAX), 2);
  EXPECT_EQ(cache.n_cached_blocks(), 1);
  EXPECT_EQ(pool.refcount(blocks[0]), 2);
  EXPECT_EQ(pool.refcount(blocks[1]), 0);
  EXPECT_EQ(pool.refcount(blocks[2]), 0);
  cache.release(prefix);
  EXPECT_EQ(cache.n_evictable(), 1);
  cache.clear();
  EXPECT_EQ(cache.n_cached_blocks(), 0);
  EXPECT_EQ(pool.n_free(), pool.n_blocks());
}

TEST(RadixCache, InsertingUnderALeafMakesItInner) {
  model::KvPool pool = make_pool(16);
  RadixCache cache(pool);
  auto a = run(cache, pool, {1, 2});
  EXPECT_EQ(cache.n_evictable(), 1);
  auto b = run(cache, pool, {1, 2, 3, 4});
  EXPECT_EQ(cache.n_evictable(), 1);  // only [3,4]
  EXPECT_EQ(cache.evict(1), 1);
  EXPECT_EQ(pool.refcount(b[1]), 0);
  EXPECT_EQ(pool.refcount(a[0]), 1);
}

// The tree as a map from token path to block, with eviction by scanning every
// node: the LRU leaf (ties: the older node) whose block only the cache holds.
struct Reference {
  struct Node {
    int32_t block;
    uint64_t last_used, id;
  };
  std::map<std::vector<int32_t>, Node> nodes;
  uint64_t clock = 0, next_id = 0;

  void walk(const std::vector<int32_t>& tokens, int64_t n_tokens, const std::vector<int32_t>* insert_blocks) {
    ++clock;
    for (int64_t b = 0; (b + 1) * kBs <= n_tokens; ++b) {
      std::vector<int32_t> path(tokens.begin(), tokens.begin() + (b + 1) * kBs);
      auto it = nodes.find(path);
      if (it == nodes.end()) {
        if (!insert_blocks || b >= static_cast<int64_t>(insert_blocks->size())) return;
        it = nodes.emplace(path, Node{(*insert_blocks)[static_cast<size_t>(b)], 0, next_id++}).first;
      }
      it->second.last_used = clock;
    }
  }
  bool is_leaf(const std::vector<int32_t>& path) const {
    auto it = nodes.upper_bound(path);  // children sort right after their parent
    return it == nodes.end() || it->first.size() <= path.size() ||
           !std::equal(path.begin(), path.end(), it->first.begin());
  }
  int32_t next_victim(const model::KvPool& pool) const {
    const std::vector<int32_t>* best = nullptr;
    for (const auto& [path, n] : nodes) {
      if (!is_leaf(path) || pool.refcount(n.block) != 1) continue;
      if (!best || std::make_pair(n.last_used, n.id) < std::make_pair(nodes.at(*best).last_used, nodes.at(*best).id))
        best = &path;
    }
    return best ? nodes.at(*best).block : -1;
  }
  void erase_block(int32_t block) {
    for (auto it = nodes.begin(); it != nodes.end(); ++it)
      if (it->second.block == block) return void(nodes.erase(it));
  }
};

TEST(RadixCache, EvictionOrderMatchesABruteForceScan) {
  model::KvPool pool = make_pool(40);
  RadixCache cache(pool);
  Reference ref;
  std::mt19937 rng(7);
  struct Held {
    std::vector<int32_t> tokens;
    model::KvSequence seq;
  };
  std::vector<Held> held;
  int64_t evictions = 0;
  for (int step = 0; step < 3000; ++step) {
    const int op = static_cast<int>(rng() % 10);
    if (op < 4 && held.size() < 4) {  // a new sequence starts (and keeps its blocks locked)
      std::vector<int32_t> tokens(2 + rng() % 9);
      for (auto& t : tokens) t = static_cast<int32_t>(rng() % 3);  // small alphabet: many shared prefixes
      // admit() may evict to make room: check each eviction against the reference.
      const int64_t max_tokens = static_cast<int64_t>(tokens.size());
      Held h{tokens, {}};
      h.seq.blocks = cache.match(tokens, max_tokens);
      ref.walk(tokens, static_cast<int64_t>(h.seq.blocks.size()) * kBs, nullptr);
      h.seq.n_tokens = static_cast<int64_t>(h.seq.blocks.size()) * kBs;
      while (!model::kv_reserve(pool, h.seq, max_tokens - h.seq.n_tokens)) {
        const int32_t want = ref.next_victim(pool);
        ASSERT_NE(want, -1) << "the test's pool is too small";
        ASSERT_EQ(cache.evict(1), 1);
        ASSERT_EQ(pool.refcount(want), 0) << "step " << step << ": evicted another block than the LRU leaf " << want;
        ref.erase_block(want);
        ++evictions;
      }
      h.seq.n_tokens = max_tokens;
      held.push_back(std::move(h));
    } else if (op < 8 && !held.empty()) {  // one finishes: its full blocks join the cache
      size_t i = rng() % held.size();
      Held h = std::move(held[i]);
      held.erase(held.begin() + static_cast<std::ptrdiff_t>(i));
      ref.walk(h.tokens, h.seq.n_tokens, &h.seq.blocks);
      finish(cache, h.tokens, h.seq);
    } else {  // pressure from elsewhere
      const int32_t want = ref.next_victim(pool);
      ASSERT_EQ(cache.evict(1), want == -1 ? 0 : 1);
      if (want != -1) {
        ASSERT_EQ(pool.refcount(want), 0) << "step " << step << ": evicted another block than the LRU leaf " << want;
        ref.erase_block(want);
        ++evictions;
      }
    }
    // Locked blocks stay; the cache's count agrees with the reference.
    ASSERT_EQ(cache.n_cached_blocks(), static_cast<int64_t>(ref.nodes.size()));
    for (const Held& h : held)
      for (int32_t b : h.seq.blocks) ASSERT_GT(pool.refcount(b), 0);
  }
  EXPECT_GT(evictions, 100);
  for (Held& h : held) cache.release(h.seq);
  cache.clear();
  EXPECT_EQ(cache.n_cached_blocks(), 0);
  EXPECT_EQ(pool.n_free(), pool.n_blocks());
}

}  // namespace
}  // namespace quanta::engine
