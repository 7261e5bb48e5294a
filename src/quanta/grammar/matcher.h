// Matching a grammar token by token, and the vocabulary mask of each step.
//
// The matcher is a pushdown automaton kept as a set of stacks (llama.cpp's grammar
// sampler works the same way): the top of each stack is the terminal to match next, the
// frames below it are where to return when a rule ends. Frames are shared between stacks
// and hash-consed, so equal stacks are equal numbers; a rule entered at the end of an
// alternative reuses its caller's frame (repetitions loop without growing the stack).
//
// The mask of a step walks a trie of the vocabulary's token bytes once, carrying the
// stacks down, and drops a whole subtree as soon as no stack survives its prefix. Masks
// are cached per compiled grammar by the matcher's state (the stacks written out), so
// requests with the same schema and the states a generation returns to (inside a string,
// between values) cost one walk each.
#pragma once

#include <cstdint>
#include <array>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "quanta/grammar/grammar.h"

namespace quanta::grammar {

// A vocabulary prepared for masking.
class TokenVocab {
 public:
  // token_bytes[id]: what the token adds to the text, as bytes; empty for tokens a grammar never
  // produces (special and control tokens). end_tokens: those that end a generation, allowed
  // once the grammar is complete.
  TokenVocab(std::vector<std::string> token_bytes, std::vector<int32_t> end_tokens);
  int32_t size() const { return static_cast<int32_t>(bytes_.size()); }
  const std::string& bytes(int32_t id) const { return bytes_[static_cast<size_t>(id)]; }
  bool is_end(int32_t id) const;
  const std::vector<int32_t>& end_tokens() const { return end_; }

  // Longer tokens are never allowed (the walk recurses once per byte).
  static constexpr size_t kMaxTokenBytes = 1024;

 private:
  friend class Matcher;
  struct Node {
    uint8_t byte = 0;
    int32_t child_begin = 0, child_end = 0;  // children are contiguous
    int32_t tok_begin = 0, tok_end = 0;      // tokens ending here, in sorted_
  };
  void build(int32_t node, int32_t lo, int32_t hi, size_t depth);

  std::vector<std::string> bytes_;
  std::vector<int32_t> end_;
  std::vector<int32_t> sorted_;  // token ids ordered by their bytes
  std::vector<Node> nodes_;      // nodes_[0] is the root (the empty prefix)
};

// A grammar bound to a vocabulary, shared by every request that uses it.
class CompiledGrammar {
 public:
  CompiledGrammar(std::shared_ptr<const Grammar> grammar, std::shared_ptr<const TokenVocab> vocab);
  const Grammar& grammar() const { return *grammar_; }
  const TokenVocab& vocab() const { return *vocab_; }

  using Mask = std::vector<uint64_t>;  // one bit per token
  std::shared_ptr<const Mask> cached(const std::string& state) const;
  void store(const std::string& state, std::shared_ptr<const Mask> mask) const;

 private:
  std::shared_ptr<const Grammar> grammar_;
  std::shared_ptr<const TokenVocab> vocab_;
  // Least recently used first; bounded by kMaxCachedMasks.
  static constexpr size_t kMaxCachedMasks = 128;
  mutable std::mutex mu_;
  mutable std::list<std::pair<std::string, std::shared_ptr<const Mask>>> lru_;
  mutable std::unordered_map<std::string, decltype(lru_)::iterator> index_;
};

class Matcher {
 public:
  explicit Matcher(std::shared_ptr<const CompiledGrammar> grammar);

  // Whether `token` may come next (an end token: whether the grammar is complete).
  bool accepts(int32_t token);
  // Takes `token`; throws quanta::Error if it is not accepted.
  void advance(int32_t token);
  // The grammar is complete here (an end token is allowed).
  bool can_end() const;
  // Nothing but an end token can follow (or one was taken).
  bool finished() const;
  // Tokens allowed now, one bit each (end tokens included when can_end()).
  std::shared_ptr<const CompiledGrammar::Mask> mask();

  // Whether the bytes could start or continue a text of the grammar from this state.
  bool accepts_bytes(std::string_view bytes);

 private:
  struct Stack {
    int32_t pos;     // element to match next; -1: the stack is empty (the grammar matched)
    int32_t parent;  // frame to return to; -1: none
    int32_t sub;     // inside a multi-byte character of a class: (sequence + 1) << 2 | bytes matched
    auto operator<=>(const Stack&) const = default;
  };
  struct Frame {
    int32_t pos, parent;
  };
  int32_t frame(int32_t pos, int32_t parent);
  void close(Stack s, std::vector<Stack>& out);
  void step(const Stack& s, uint8_t b, std::vector<Stack>& out);
  // States are interned sets of stacks; transitions between them are memoized per byte, so the
  // walks of later steps mostly follow table entries (a DFA built lazily, as far as it is used).
  int32_t intern(std::vector<Stack> stacks);
  int32_t transition(int32_t state, uint8_t b);
  int32_t run(int32_t state, std::string_view bytes);
  void walk(int32_t node, int32_t state, CompiledGrammar::Mask& mask);
  std::string state_key() const;
  void reset_tables();

  std::shared_ptr<const CompiledGrammar> compiled_;
  const Grammar& g_;
  const TokenVocab& vocab_;
  std::vector<Frame> frames_;
  std::unordered_map<uint64_t, int32_t> frame_ids_;
  std::vector<std::vector<Stack>> states_;
  std::map<std::vector<Stack>, int32_t> state_ids_;
  std::vector<std::array<int32_t, 256>> next_;  // kUnknown until computed; -1: no stack survives
  int32_t state_ = -1;                          // the current state
  bool ended_ = false;
  std::vector<Stack> work_;
  size_t budget_ = 0;  // stack expansions left to the current operation
};

}  // namespace quanta::grammar
