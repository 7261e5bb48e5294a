// AddedVocab: the added tokens of a tokenizer (special ones like <|im_end|>
// and plain additions like <think>), matched in the text before the model runs.
//
// Semantics of Hugging Face tokenizers' AddedVocabulary (0.23):
//   - Tokens with normalized=false are matched in the raw text first; the text
//     between them is normalized, and tokens with normalized=true are then
//     matched in that normalized text, spelled as the normalizer spells them.
//   - Matching is leftmost-longest and non-overlapping (Aho-Corasick
//     LeftmostLongest). single_word requires no word character on either side;
//     lstrip/rstrip extend the match over neighbouring whitespace.
//   - With parse_special off (tokenizers' encode_special_tokens), special tokens
//     are skipped where they match and the text is tokenized as text.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace quanta::tokenizer {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
  bool special = false;
};

class AddedVocab {
 public:
  struct Match {
    size_t start, end;  // byte range in the searched text, strip extensions included
    int32_t id;
  };

  // Adding a token whose content is already present replaces it.
  void add(AddedToken token);
  // Builds the matchers; `normalize` spells the patterns of normalized tokens.
  void build(const std::function<std::string(std::string_view)>& normalize);

  // Matches in `text` of the normalized=false set (`normalized_set` false) or
  // the normalized=true set, in order.
  void find(std::string_view text, bool normalized_set, bool parse_special, std::vector<Match>& out) const;

  const AddedToken* by_id(int32_t id) const;
  const AddedToken* by_content(std::string_view content) const;
  bool empty() const { return tokens_.empty(); }
  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  // Byte trie with a first-byte filter; nodes hold the token index that ends there.
  struct Trie {
    struct Node {
      std::vector<std::pair<uint8_t, int32_t>> children;  // sorted by byte
      int32_t token = -1;
    };
    std::vector<Node> nodes;
    bool first[256] = {};
    void insert(std::string_view key, int32_t token);
    // Longest match starting at s[pos]: the token index and its length, or -1.
    int32_t longest(std::string_view s, size_t pos, size_t& len) const;
  };

  std::vector<AddedToken> tokens_;
  std::unordered_map<std::string, size_t> by_content_;
  std::unordered_map<int32_t, size_t> by_id_;
  Trie raw_trie_, normalized_trie_;
};

}  // namespace quanta::tokenizer
