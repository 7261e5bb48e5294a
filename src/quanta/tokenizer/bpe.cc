#include "quanta/tokenizer/bpe.h"

#include <algorithm>
#include <queue>

#include "quanta/core/error.h"
#include "quanta/tokenizer/unicode.h"

namespace quanta::tokenizer {

namespace {

constexpr uint64_t kEmptyKey = ~uint64_t{0};
// Pieces up to this many symbols merge by scanning; longer ones use a heap.
constexpr size_t kScanLimit = 48;
constexpr size_t kCacheMaxEntries = 1 << 16;
constexpr size_t kCacheMaxPieceBytes = 128;

uint64_t mix(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  return k;
}

}  // namespace

void BpeModel::MergeTable::reserve(size_t n) {
  size_t cap = 16;
  while (cap < n * 2) cap <<= 1;
  keys.assign(cap, kEmptyKey);
  values.assign(cap, MergeValue{0, 0});
  mask = cap - 1;
}

void BpeModel::MergeTable::put(uint64_t key, MergeValue v) {
  for (uint64_t i = mix(key) & mask;; i = (i + 1) & mask) {
    if (keys[i] == kEmptyKey || keys[i] == key) {
      keys[i] = key;
      values[i] = v;
      return;
    }
  }
}

const BpeModel::MergeValue* BpeModel::MergeTable::get(uint64_t key) const {
  if (keys.empty()) return nullptr;
  for (uint64_t i = mix(key) & mask;; i = (i + 1) & mask) {
    if (keys[i] == key) return &values[i];
    if (keys[i] == kEmptyKey) return nullptr;
  }
}

BpeModel::BpeModel(BpeModel&& o) noexcept
    : vocab_(std::move(o.vocab_)),
      tokens_(std::move(o.tokens_)),
      present_(std::move(o.present_)),
      raw_vocab_(std::move(o.raw_vocab_)),
      byte_level_ids_(o.byte_level_ids_),
      fallback_ids_(o.fallback_ids_),
      unk_id_(o.unk_id_),
      merges_(std::move(o.merges_)),
      options_(std::move(o.options_)) {}

BpeModel& BpeModel::operator=(BpeModel&& o) noexcept {
  vocab_ = std::move(o.vocab_);
  tokens_ = std::move(o.tokens_);
  present_ = std::move(o.present_);
  raw_vocab_ = std::move(o.raw_vocab_);
  byte_level_ids_ = o.byte_level_ids_;
  fallback_ids_ = o.fallback_ids_;
  unk_id_ = o.unk_id_;
  merges_ = std::move(o.merges_);
  options_ = std::move(o.options_);
  cache_.clear();
  return *this;
}

void BpeModel::build_vocab(std::vector<std::pair<std::string, int32_t>> vocab, BpeOptions options) {
  options_ = std::move(options);
  vocab_.clear();
  vocab_.reserve(vocab.size() * 2);
  int32_t max_id = -1;
  for (auto& [tok, id] : vocab) {
    if (id < 0) throw Error("negative token id " + std::to_string(id) + " for '" + tok + "'", {.field = "model.vocab"});
    max_id = std::max(max_id, id);
  }
  tokens_.assign(static_cast<size_t>(max_id + 1), std::string());
  present_.assign(static_cast<size_t>(max_id + 1), false);
  for (auto& [tok, id] : vocab) {
    tokens_[id] = tok;
    present_[id] = true;
    vocab_[std::move(tok)] = id;
  }
  std::string raw;
  raw_vocab_.clear();
  for (size_t id = 0; id < tokens_.size(); ++id)
    if (present_[id] && byte_level_decode(tokens_[id], raw)) raw_vocab_.emplace(raw, static_cast<int32_t>(id));
  const auto& b2u = byte_to_unicode();
  static const char* hex = "0123456789ABCDEF";
  for (int b = 0; b < 256; ++b) {
    std::string spelled;
    utf8_append(spelled, b2u[b]);
    auto it = vocab_.find(spelled);
    byte_level_ids_[b] = it == vocab_.end() ? -1 : it->second;
    // tokenizers spells fallback bytes as format!("<{:#04X}>"): "<0x0A>".
    std::string fb = "<0x";
    fb += hex[b >> 4];
    fb += hex[b & 15];
    fb += '>';
    auto jt = vocab_.find(fb);
    fallback_ids_[b] = jt == vocab_.end() ? -1 : jt->second;
  }
  unk_id_.reset();
  if (options_.unk_token) {
    auto it = vocab_.find(*options_.unk_token);
    // tokenizers only complains when an unknown token is actually needed; so do we (it is then dropped).
    if (it != vocab_.end()) unk_id_ = it->second;
  }
  std::lock_guard<std::mutex> lock(cache_mutex_);
  cache_.clear();
}

void BpeModel::add_merge(const std::string& a, const std::string& b, uint32_t rank) {
  auto ia = vocab_.find(a);
  auto ib = vocab_.find(b);
  if (ia == vocab_.end() || ib == vocab_.end())
    throw Error("merge '" + a + " " + b + "' uses a token that is not in the vocabulary", {.field = "model.merges"});
  std::string merged = a;
  size_t skip = options_.continuing_subword_prefix.size();
  if (skip && b.compare(0, skip, options_.continuing_subword_prefix) == 0) merged.append(b, skip, std::string::npos);
  else merged += b;
  auto im = vocab_.find(merged);
  if (im == vocab_.end())
    throw Error("merge '" + a + " " + b + "' gives '" + merged + "', which is not in the vocabulary",
                {.field = "model.merges"});
  merges_.put(pair_key(ia->second, ib->second), MergeValue{rank, im->second});
}

void BpeModel::init(std::vector<std::pair<std::string, int32_t>> vocab,
                    const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions options) {
  build_vocab(std::move(vocab), std::move(options));
  merges_.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) add_merge(merges[i].first, merges[i].second, static_cast<uint32_t>(i));
}

void BpeModel::init_ranked(std::vector<std::pair<std::string, int32_t>> vocab,
                           const std::vector<std::pair<std::pair<std::string, std::string>, uint32_t>>& merges,
                           BpeOptions options) {
  build_vocab(std::move(vocab), std::move(options));
  merges_.reserve(merges.size());
  for (const auto& [pair, rank] : merges) add_merge(pair.first, pair.second, rank);
}

std::optional<int32_t> BpeModel::token_to_id(std::string_view token) const {
  auto it = vocab_.find(std::string(token));
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::id_to_token(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= tokens_.size() || !present_[id]) return nullptr;
  return &tokens_[id];
}

std::optional<int32_t> BpeModel::whole_piece(std::string_view piece, Input input) const {
  if (input == Input::kByteLevelRaw) {
    auto it = raw_vocab_.find(std::string(piece));
    if (it != raw_vocab_.end()) return it->second;
    return std::nullopt;
  }
  return token_to_id(piece);
}

void BpeModel::initial_symbols(std::string_view piece, Input input, std::vector<int32_t>& ids) const {
  const bool affixes = !options_.continuing_subword_prefix.empty() || !options_.end_of_word_suffix.empty();
  // Fast path: raw byte-level input, every byte's character in the vocabulary.
  if (input == Input::kByteLevelRaw && !affixes) {
    bool all = true;
    for (char c : piece) {
      int32_t id = byte_level_ids_[static_cast<uint8_t>(c)];
      if (id < 0) {
        all = false;
        break;
      }
      ids.push_back(id);
    }
    if (all) return;
    ids.clear();
  }
  std::string spelled_storage;
  std::string_view text = piece;
  if (input == Input::kByteLevelRaw) {
    spelled_storage = byte_level_encode(piece);
    text = spelled_storage;
  }
  int32_t pending_unk = -1;  // tokenizers' `unk` with its fusing rule (-1: none)
  std::string sym;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    utf8_next(text, i);
    bool first = start == 0, last = i == text.size();
    sym.clear();
    if (!first) sym += options_.continuing_subword_prefix;
    sym.append(text.data() + start, i - start);
    if (last) sym += options_.end_of_word_suffix;
    auto it = vocab_.find(sym);
    if (it != vocab_.end()) {
      if (pending_unk >= 0) ids.push_back(pending_unk), pending_unk = -1;
      ids.push_back(it->second);
      continue;
    }
    if (options_.byte_fallback) {
      bool all = true;
      for (char c : sym) all &= fallback_ids_[static_cast<uint8_t>(c)] >= 0;
      if (all) {
        for (char c : sym) ids.push_back(fallback_ids_[static_cast<uint8_t>(c)]);
        continue;
      }
    }
    if (unk_id_) {
      if (pending_unk >= 0 && !options_.fuse_unk) ids.push_back(pending_unk);
      pending_unk = *unk_id_;
    }
    // No unknown token: the character is dropped, as tokenizers does.
  }
  if (pending_unk >= 0) ids.push_back(pending_unk);
}

void BpeModel::merge(std::vector<int32_t>& ids) const {
  size_t n = ids.size();
  if (n < 2) return;
  if (n <= kScanLimit) {
    // Repeatedly merge the lowest-rank adjacent pair (leftmost on ties). This is
    // what tokenizers' priority queue does: a merged pair always spells a longer
    // string, so its stale queue entries never fire.
    const MergeValue* best;
    for (;;) {
      best = nullptr;
      size_t best_pos = 0;
      for (size_t i = 0; i + 1 < n; ++i) {
        const MergeValue* m = merges_.get(pair_key(ids[i], ids[i + 1]));
        if (m && (!best || m->rank < best->rank)) best = m, best_pos = i;
      }
      if (!best) break;
      ids[best_pos] = best->new_id;
      ids.erase(ids.begin() + static_cast<std::ptrdiff_t>(best_pos) + 1);
      --n;
    }
    return;
  }
  struct Sym {
    int32_t id;
    int32_t prev, next;
    bool alive;
  };
  std::vector<Sym> sy(n);
  for (size_t i = 0; i < n; ++i)
    sy[i] = Sym{ids[i], static_cast<int32_t>(i) - 1, i + 1 < n ? static_cast<int32_t>(i + 1) : -1, true};
  struct Entry {
    uint32_t rank;
    int32_t pos;
    int32_t new_id;
    bool operator<(const Entry& o) const {  // max-heap: invert for lowest rank, then lowest pos
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Entry> queue;
  for (size_t i = 0; i + 1 < n; ++i)
    if (const MergeValue* m = merges_.get(pair_key(ids[i], ids[i + 1])))
      queue.push(Entry{m->rank, static_cast<int32_t>(i), m->new_id});
  while (!queue.empty()) {
    Entry top = queue.top();
    queue.pop();
    Sym& cur = sy[top.pos];
    if (!cur.alive || cur.next < 0) continue;
    Sym& right = sy[cur.next];
    const MergeValue* m = merges_.get(pair_key(cur.id, right.id));
    if (!m || m->new_id != top.new_id) continue;
    cur.id = top.new_id;
    right.alive = false;
    cur.next = right.next;
    if (right.next >= 0) sy[right.next].prev = top.pos;
    if (cur.prev >= 0)
      if (const MergeValue* pm = merges_.get(pair_key(sy[cur.prev].id, cur.id)))
        queue.push(Entry{pm->rank, cur.prev, pm->new_id});
    if (cur.next >= 0)
      if (const MergeValue* nm = merges_.get(pair_key(cur.id, sy[cur.next].id)))
        queue.push(Entry{nm->rank, top.pos, nm->new_id});
  }
  ids.clear();
  for (int32_t i = 0; i >= 0; i = sy[i].next) ids.push_back(sy[i].id);
}

void BpeModel::tokenize(std::string_view piece, Input input, std::vector<int32_t>& out) const {
  if (piece.empty()) return;
  if (options_.ignore_merges)
    if (auto id = whole_piece(piece, input)) {
      out.push_back(*id);
      return;
    }
  const bool cacheable = piece.size() <= kCacheMaxPieceBytes;
  std::string key;
  if (cacheable) {
    key.reserve(piece.size() + 1);
    key += static_cast<char>(input);
    key.append(piece);
    std::lock_guard<std::mutex> lock(cache_mutex_);
    auto it = cache_.find(key);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  thread_local std::vector<int32_t> ids;
  ids.clear();
  initial_symbols(piece, input, ids);
  merge(ids);
  out.insert(out.end(), ids.begin(), ids.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() >= kCacheMaxEntries) cache_.clear();
    cache_.emplace(std::move(key), ids);
  }
}

}  // namespace quanta::tokenizer
