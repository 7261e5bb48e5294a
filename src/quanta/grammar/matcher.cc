#include "quanta/grammar/matcher.h"

#include <algorithm>
#include <numeric>

#include "quanta/core/error.h"

namespace quanta::grammar {

namespace {
// A grammar whose stacks multiply past this (deeply ambiguous rules, like ((a+)+)+) is refused
// while matching rather than left to exhaust memory or time: a state holds at most kMaxStacks
// stacks, and one operation (a check, an advance, a mask) expands at most kWorkBudget of them
// (a cold mask of a JSON Schema over a 262k vocabulary takes well under a tenth of it).
constexpr size_t kMaxStacks = 1 << 12;
constexpr size_t kWorkBudget = 1 << 22;
// Memoized states and frames are dropped past these (between steps), and a single walk may not
// create more than kMaxStates states.
constexpr size_t kResetStates = 1 << 12;
constexpr size_t kResetFrames = 1 << 20;
constexpr size_t kMaxStates = 1 << 15;
constexpr int32_t kUnknown = -2;

void set_bit(CompiledGrammar::Mask& m, int32_t id) { m[static_cast<size_t>(id) >> 6] |= uint64_t{1} << (id & 63); }
}  // namespace

// ---------------------------------------------------------------------------

TokenVocab::TokenVocab(std::vector<std::string> token_bytes, std::vector<int32_t> end_tokens)
    : bytes_(std::move(token_bytes)), end_(std::move(end_tokens)) {
  for (int32_t id = 0; id < size(); ++id) {
    auto& b = bytes_[static_cast<size_t>(id)];
    if (b.size() > kMaxTokenBytes || is_end(id)) b.clear();
    if (!b.empty()) sorted_.push_back(id);
  }
  std::sort(sorted_.begin(), sorted_.end(), [&](int32_t a, int32_t b) { return bytes(a) < bytes(b) || (bytes(a) == bytes(b) && a < b); });
  nodes_.emplace_back();
  build(0, 0, static_cast<int32_t>(sorted_.size()), 0);
}

bool TokenVocab::is_end(int32_t id) const { return std::find(end_.begin(), end_.end(), id) != end_.end(); }

// Node `node` stands for the common prefix of sorted_[lo, hi) of length `depth`.
void TokenVocab::build(int32_t node, int32_t lo, int32_t hi, size_t depth) {
  int32_t i = lo;
  while (i < hi && bytes(sorted_[static_cast<size_t>(i)]).size() == depth) ++i;
  nodes_[static_cast<size_t>(node)].tok_begin = lo;
  nodes_[static_cast<size_t>(node)].tok_end = i;
  std::vector<std::pair<int32_t, int32_t>> groups;  // [start, end) of each next byte
  while (i < hi) {
    const char b = bytes(sorted_[static_cast<size_t>(i)])[depth];
    int32_t j = i;
    while (j < hi && bytes(sorted_[static_cast<size_t>(j)])[depth] == b) ++j;
    groups.emplace_back(i, j);
    i = j;
  }
  const auto first = static_cast<int32_t>(nodes_.size());
  nodes_[static_cast<size_t>(node)].child_begin = first;
  nodes_[static_cast<size_t>(node)].child_end = first + static_cast<int32_t>(groups.size());
  for (auto [s, e] : groups) {
    Node n;
    n.byte = static_cast<uint8_t>(bytes(sorted_[static_cast<size_t>(s)])[depth]);
    nodes_.push_back(n);
  }
  for (size_t k = 0; k < groups.size(); ++k) build(first + static_cast<int32_t>(k), groups[k].first, groups[k].second, depth + 1);
}

// ---------------------------------------------------------------------------

CompiledGrammar::CompiledGrammar(std::shared_ptr<const Grammar> grammar, std::shared_ptr<const TokenVocab> vocab)
    : grammar_(std::move(grammar)), vocab_(std::move(vocab)) {}

std::shared_ptr<const CompiledGrammar::Mask> CompiledGrammar::cached(const std::string& state) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = index_.find(state);
  if (it == index_.end()) return nullptr;
  lru_.splice(lru_.end(), lru_, it->second);
  return it->second->second;
}

void CompiledGrammar::store(const std::string& state, std::shared_ptr<const Mask> mask) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (index_.count(state)) return;
  lru_.emplace_back(state, std::move(mask));
  index_[state] = std::prev(lru_.end());
  if (lru_.size() > kMaxCachedMasks) {
    index_.erase(lru_.front().first);
    lru_.pop_front();
  }
}

// ---------------------------------------------------------------------------

Matcher::Matcher(std::shared_ptr<const CompiledGrammar> grammar)
    : compiled_(std::move(grammar)), g_(compiled_->grammar()), vocab_(compiled_->vocab()) {
  budget_ = kWorkBudget;
  std::vector<Stack> start;
  for (int32_t alt : g_.alternatives[static_cast<size_t>(g_.root)]) close({alt, -1, 0}, start);
  state_ = intern(std::move(start));
  if (state_ < 0) ended_ = true;
}

int32_t Matcher::frame(int32_t pos, int32_t parent) {
  const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(pos)) << 32) | static_cast<uint32_t>(parent);
  auto [it, added] = frame_ids_.try_emplace(key, static_cast<int32_t>(frames_.size()));
  if (added) frames_.push_back({pos, parent});
  return it->second;
}

// Expands `s` until every resulting stack's top is a terminal (or the stack is empty).
void Matcher::close(Stack s, std::vector<Stack>& out) {
  std::vector<Stack>& work = work_;
  work.clear();
  work.push_back(s);
  while (!work.empty()) {
    Stack cur = work.back();
    work.pop_back();
    if (budget_ == 0 || out.size() > kMaxStacks)
      throw Error("grammar: too ambiguous to match (its stacks multiply past the limit)");
    --budget_;
    while (true) {
      if (cur.pos < 0) {
        out.push_back({-1, -1, 0});
        break;
      }
      const Element& e = g_.elements[static_cast<size_t>(cur.pos)];
      if (e.kind == Element::kEnd) {
        if (cur.parent < 0) {
          cur = {-1, -1, 0};
        } else {
          const Frame f = frames_[static_cast<size_t>(cur.parent)];
          cur = {f.pos, f.parent, 0};
        }
        continue;
      }
      if (e.kind == Element::kRule) {
        // A rule at the end of an alternative returns straight to the caller's caller.
        const int32_t ret = cur.pos + 1;
        const int32_t parent =
            g_.elements[static_cast<size_t>(ret)].kind == Element::kEnd ? cur.parent : frame(ret, cur.parent);
        for (int32_t start : g_.alternatives[static_cast<size_t>(e.value)]) work.push_back({start, parent, 0});
        break;
      }
      out.push_back(cur);
      break;
    }
  }
}

void Matcher::step(const Stack& s, uint8_t b, std::vector<Stack>& out) {
  if (s.pos < 0) return;
  const Element& e = g_.elements[static_cast<size_t>(s.pos)];
  if (e.kind == Element::kBytes) {
    if (g_.byte_sets[static_cast<size_t>(e.value)].has(b)) close({s.pos + 1, s.parent, 0}, out);
    return;
  }
  const Utf8Class& cls = g_.classes[static_cast<size_t>(e.value)];
  if (s.sub == 0) {
    if (b < 0x80) {
      if (cls.ascii.has(b)) close({s.pos + 1, s.parent, 0}, out);
      return;
    }
    for (size_t k = 0; k < cls.seqs.size(); ++k)
      if (b >= cls.seqs[k][0].first && b <= cls.seqs[k][0].second)
        out.push_back({s.pos, s.parent, static_cast<int32_t>(((k + 1) << 2) | 1)});
    return;
  }
  const auto& seq = cls.seqs[static_cast<size_t>((s.sub >> 2) - 1)];
  const size_t at = static_cast<size_t>(s.sub & 3);
  if (b < seq[at].first || b > seq[at].second) return;
  if (at + 1 == seq.size()) close({s.pos + 1, s.parent, 0}, out);
  else out.push_back({s.pos, s.parent, s.sub + 1});
}

int32_t Matcher::intern(std::vector<Stack> stacks) {
  if (stacks.empty()) return -1;
  std::sort(stacks.begin(), stacks.end());
  stacks.erase(std::unique(stacks.begin(), stacks.end()), stacks.end());
  auto [it, added] = state_ids_.try_emplace(stacks, static_cast<int32_t>(states_.size()));
  if (added) {
    if (states_.size() >= kMaxStates) throw Error("grammar: too many distinct matching states (the grammar is too ambiguous)");
    states_.push_back(std::move(stacks));
    std::array<int32_t, 256> unknown;
    unknown.fill(kUnknown);
    next_.push_back(unknown);
  }
  return it->second;
}

int32_t Matcher::transition(int32_t state, uint8_t b) {
  int32_t& memo = next_[static_cast<size_t>(state)][b];
  if (memo != kUnknown) return memo;
  std::vector<Stack> out;
  const std::vector<Stack> from = states_[static_cast<size_t>(state)];  // intern() may grow states_
  for (const Stack& s : from) step(s, b, out);
  const int32_t to = intern(std::move(out));
  next_[static_cast<size_t>(state)][b] = to;
  return to;
}

int32_t Matcher::run(int32_t state, std::string_view bytes) {
  for (char c : bytes) {
    if (state < 0) break;
    state = transition(state, static_cast<uint8_t>(c));
  }
  return state;
}

bool Matcher::accepts_bytes(std::string_view bytes) {
  budget_ = kWorkBudget;
  return !ended_ && run(state_, bytes) >= 0;
}

bool Matcher::accepts(int32_t token) {
  if (ended_ || token < 0 || token >= vocab_.size()) return false;
  if (vocab_.is_end(token)) return can_end();
  const std::string& b = vocab_.bytes(token);
  return !b.empty() && accepts_bytes(b);
}

void Matcher::advance(int32_t token) {
  if (!accepts(token)) throw Error("grammar: token " + std::to_string(token) + " does not continue the grammar here");
  if (vocab_.is_end(token)) {
    ended_ = true;
    return;
  }
  state_ = run(state_, vocab_.bytes(token));
  if (states_.size() > kResetStates || frames_.size() > kResetFrames) reset_tables();
}

bool Matcher::can_end() const {
  if (ended_) return false;
  const auto& st = states_[static_cast<size_t>(state_)];
  return std::any_of(st.begin(), st.end(), [](const Stack& s) { return s.pos < 0; });
}

bool Matcher::finished() const {
  if (ended_) return true;
  const auto& st = states_[static_cast<size_t>(state_)];
  return std::all_of(st.begin(), st.end(), [](const Stack& s) { return s.pos < 0; });
}

// The stacks written out frame by frame: equal for equal states in any matcher of the grammar.
std::string Matcher::state_key() const {
  std::vector<int32_t> v;
  for (const Stack& s : states_[static_cast<size_t>(state_)]) {
    v.push_back(s.pos);
    v.push_back(s.sub);
    for (int32_t f = s.parent; f >= 0; f = frames_[static_cast<size_t>(f)].parent)
      v.push_back(frames_[static_cast<size_t>(f)].pos);
    v.push_back(-2);
  }
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(int32_t));
}

void Matcher::walk(int32_t node, int32_t state, CompiledGrammar::Mask& mask) {
  const TokenVocab::Node& n = vocab_.nodes_[static_cast<size_t>(node)];
  for (int32_t c = n.child_begin; c < n.child_end; ++c) {
    const TokenVocab::Node& child = vocab_.nodes_[static_cast<size_t>(c)];
    const int32_t next = transition(state, child.byte);
    if (next < 0) continue;
    for (int32_t t = child.tok_begin; t < child.tok_end; ++t) set_bit(mask, vocab_.sorted_[static_cast<size_t>(t)]);
    if (child.child_begin < child.child_end) walk(c, next, mask);
  }
}

std::shared_ptr<const CompiledGrammar::Mask> Matcher::mask() {
  const size_t words = (static_cast<size_t>(vocab_.size()) + 63) / 64;
  if (ended_) return std::make_shared<CompiledGrammar::Mask>(words, 0);
  std::string key = state_key();
  if (auto m = compiled_->cached(key)) return m;
  auto m = std::make_shared<CompiledGrammar::Mask>(words, 0);
  budget_ = kWorkBudget;
  if (can_end())
    for (int32_t t : vocab_.end_tokens())
      if (t >= 0 && t < vocab_.size()) set_bit(*m, t);
  walk(0, state_, *m);
  if (states_.size() > kResetStates || frames_.size() > kResetFrames) reset_tables();
  compiled_->store(key, m);
  return m;
}

// Drops the memoized states and the frames only they used, keeping the current state.
void Matcher::reset_tables() {
  std::vector<Stack> current = states_[static_cast<size_t>(state_)];
  std::vector<Frame> old;
  old.swap(frames_);
  frame_ids_.clear();
  std::unordered_map<int32_t, int32_t> moved;
  for (Stack& s : current) {
    // Parents first, iteratively: chains can be as deep as the text is long.
    std::vector<int32_t> chain;
    for (int32_t f = s.parent; f >= 0 && !moved.count(f); f = old[static_cast<size_t>(f)].parent) chain.push_back(f);
    for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
      const int32_t p = old[static_cast<size_t>(*it)].parent;
      moved[*it] = frame(old[static_cast<size_t>(*it)].pos, p < 0 ? -1 : moved.at(p));
    }
    if (s.parent >= 0) s.parent = moved.at(s.parent);
  }
  states_.clear();
  state_ids_.clear();
  next_.clear();
  state_ = intern(std::move(current));
}

}  // namespace quanta::grammar
