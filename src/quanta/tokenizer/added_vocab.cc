#include "quanta/tokenizer/added_vocab.h"

#include <algorithm>

#include "quanta/tokenizer/unicode.h"

namespace quanta::tokenizer {

void AddedVocab::Trie::insert(std::string_view key, int32_t token) {
  if (key.empty()) return;  // an empty pattern would match everywhere; tokenizers never matches it
  if (nodes.empty()) nodes.emplace_back();
  first[static_cast<uint8_t>(key[0])] = true;
  int32_t node = 0;
  for (char ch : key) {
    auto c = static_cast<uint8_t>(ch);
    auto& kids = nodes[node].children;
    auto it = std::lower_bound(kids.begin(), kids.end(), std::make_pair(c, int32_t{-1}),
                               [](const auto& a, const auto& b) { return a.first < b.first; });
    if (it != kids.end() && it->first == c) {
      node = it->second;
    } else {
      auto next = static_cast<int32_t>(nodes.size());
      kids.insert(it, {c, next});
      nodes.emplace_back();
      node = next;
    }
  }
  // The first token added with this spelling wins, as in an Aho-Corasick automaton
  // built from the pattern list.
  if (nodes[node].token < 0) nodes[node].token = token;
}

int32_t AddedVocab::Trie::longest(std::string_view s, size_t pos, size_t& len) const {
  int32_t best = -1;
  int32_t node = 0;
  for (size_t i = pos; i < s.size(); ++i) {
    auto c = static_cast<uint8_t>(s[i]);
    const auto& kids = nodes[node].children;
    auto it = std::lower_bound(kids.begin(), kids.end(), std::make_pair(c, int32_t{-1}),
                               [](const auto& a, const auto& b) { return a.first < b.first; });
    if (it == kids.end() || it->first != c) break;
    node = it->second;
    if (nodes[node].token >= 0) best = nodes[node].token, len = i + 1 - pos;
  }
  return best;
}

void AddedVocab::add(AddedToken token) {
  auto it = by_content_.find(token.content);
  if (it != by_content_.end()) {
    by_id_.erase(tokens_[it->second].id);
    tokens_[it->second] = token;
    by_id_[token.id] = it->second;
    return;
  }
  by_content_[token.content] = tokens_.size();
  by_id_[token.id] = tokens_.size();
  tokens_.push_back(std::move(token));
}

void AddedVocab::build(const std::function<std::string(std::string_view)>& normalize) {
  raw_trie_ = Trie();
  normalized_trie_ = Trie();
  // tokenizers lists special tokens before the other added tokens when it
  // builds its automata; only the order of equal spellings depends on it.
  for (int pass = 0; pass < 2; ++pass)
    for (size_t i = 0; i < tokens_.size(); ++i) {
      const AddedToken& t = tokens_[i];
      if (t.special != (pass == 0)) continue;
      if (t.normalized) normalized_trie_.insert(normalize(t.content), static_cast<int32_t>(i));
      else raw_trie_.insert(t.content, static_cast<int32_t>(i));
    }
}

namespace {

bool ends_with_word(std::string_view s) {
  if (s.empty()) return false;
  size_t i = s.size() - 1;
  while (i > 0 && (static_cast<uint8_t>(s[i]) & 0xC0) == 0x80) --i;
  size_t j = i;
  return is_word_char(utf8_next(s, j));
}

bool starts_with_word(std::string_view s) {
  if (s.empty()) return false;
  size_t i = 0;
  return is_word_char(utf8_next(s, i));
}

}  // namespace

void AddedVocab::find(std::string_view text, bool normalized_set, bool parse_special,
                      std::vector<Match>& out) const {
  const Trie& trie = normalized_set ? normalized_trie_ : raw_trie_;
  if (trie.nodes.empty()) return;
  size_t start_offset = 0;  // end of the previous match
  size_t pos = 0;
  while (pos < text.size()) {
    if (!trie.first[static_cast<uint8_t>(text[pos])]) {
      ++pos;
      continue;
    }
    size_t len = 0;
    int32_t index = trie.longest(text, pos, len);
    if (index < 0) {
      ++pos;
      continue;
    }
    const AddedToken& t = tokens_[index];
    size_t start = pos, stop = pos + len;
    pos = stop;  // the automaton resumes after the match, even when it is rejected below
    if (t.special && !parse_special) continue;
    if (t.single_word) {
      bool start_ok = start == 0 || !ends_with_word(text.substr(0, start));
      bool stop_ok = stop == text.size() || !starts_with_word(text.substr(stop));
      if (!start_ok || !stop_ok) continue;
    }
    if (t.lstrip) {
      size_t s = start;
      while (s > 0) {
        size_t k = s - 1;
        while (k > 0 && (static_cast<uint8_t>(text[k]) & 0xC0) == 0x80) --k;
        size_t j = k;
        if (!is_whitespace(utf8_next(text, j))) break;
        s = k;
      }
      // Whitespace the previous match already took stays with it.
      start = std::max(s, start_offset);
    }
    if (t.rstrip) {
      size_t j = stop;
      while (j < text.size()) {
        size_t k = j;
        if (!is_whitespace(utf8_next(text, k))) break;
        j = k;
      }
      stop = j;
    }
    out.push_back(Match{start, stop, t.id});
    start_offset = stop;
  }
}

const AddedToken* AddedVocab::by_id(int32_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

const AddedToken* AddedVocab::by_content(std::string_view content) const {
  auto it = by_content_.find(std::string(content));
  return it == by_content_.end() ? nullptr : &tokens_[it->second];
}

}  // namespace quanta::tokenizer
