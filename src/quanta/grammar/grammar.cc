// The EBNF parser and compiler (grammar.h).
#include "quanta/grammar/grammar.h"

#include <functional>
#include <map>
#include <unordered_map>

#include "quanta/core/error.h"
#include "quanta/tokenizer/unicode.h"

namespace quanta::grammar {
namespace {

constexpr uint32_t kMaxCodepoint = 0x10FFFF;

// The UTF-8 encodings of the code points [lo, hi] as sequences of byte ranges: the range is
// split until the two ends share every byte but a suffix that spans whole continuation ranges
// (the construction regex engines use for UTF-8 automata).
void add_utf8_range(uint32_t lo, uint32_t hi, Utf8Class& out) {
  if (lo > hi) return;
  if (lo <= 0xD7FF && hi >= 0xE000) {  // surrogates are not characters
    add_utf8_range(lo, 0xD7FF, out);
    add_utf8_range(0xE000, hi, out);
    return;
  }
  if (lo >= 0xD800 && hi <= 0xDFFF) return;
  if (lo >= 0xD800 && lo <= 0xDFFF) lo = 0xE000;
  if (hi >= 0xD800 && hi <= 0xDFFF) hi = 0xD7FF;
  if (lo > hi) return;
  for (uint32_t boundary : {0x7Fu, 0x7FFu, 0xFFFFu}) {
    if (lo <= boundary && hi > boundary) {
      add_utf8_range(lo, boundary, out);
      add_utf8_range(boundary + 1, hi, out);
      return;
    }
  }
  if (hi < 0x80) {
    out.ascii.add_range(static_cast<uint8_t>(lo), static_cast<uint8_t>(hi));
    return;
  }
  for (int i = 1; i < 4; ++i) {
    const uint32_t m = (1u << (6 * i)) - 1;
    if ((lo & ~m) != (hi & ~m)) {
      if ((lo & m) != 0) {
        add_utf8_range(lo, lo | m, out);
        add_utf8_range((lo | m) + 1, hi, out);
        return;
      }
      if ((hi & m) != m) {
        add_utf8_range(lo, (hi & ~m) - 1, out);
        add_utf8_range(hi & ~m, hi, out);
        return;
      }
    }
  }
  std::string a, b;
  tokenizer::utf8_append(a, lo);
  tokenizer::utf8_append(b, hi);
  std::vector<std::pair<uint8_t, uint8_t>> seq;
  for (size_t k = 0; k < a.size(); ++k) seq.emplace_back(static_cast<uint8_t>(a[k]), static_cast<uint8_t>(b[k]));
  out.seqs.push_back(std::move(seq));
}

using Sequence = std::vector<Element>;
using Alternatives = std::vector<Sequence>;

class Compiler {
 public:
  Compiler(std::string_view text, const std::string& what) : s_(text), what_(what) {}

  std::shared_ptr<const Grammar> run() {
    skip_space();
    while (pos_ < s_.size()) {
      const size_t at = pos_;
      std::string name = parse_name();
      skip_space();
      if (!consume("::=")) fail("expected '::=' after the rule name '" + name + "'");
      const int32_t id = rule_id(name, at);
      if (defined_[static_cast<size_t>(id)]) fail_at(at, "the rule '" + name + "' is defined twice");
      defined_[static_cast<size_t>(id)] = true;
      rules_[static_cast<size_t>(id)] = parse_alternatives(false);
      skip_space();
    }
    auto root = by_name_.find("root");
    if (root == by_name_.end() || !defined_[static_cast<size_t>(root->second)])
      throw Error(what_ + ": the grammar has no 'root' rule");
    for (size_t r = 0; r < rules_.size(); ++r)
      if (!defined_[r]) fail_at(first_use_[r], "the rule '" + g_->rule_names[r] + "' is used but not defined");
    flatten();
    g_->root = root->second;
    check_left_recursion();
    return g_;
  }

 private:
  [[noreturn]] void fail_at(size_t at, const std::string& why) const {
    size_t line = 1, col = 1;
    for (size_t i = 0; i < at && i < s_.size(); ++i) {
      if (s_[i] == '\n') ++line, col = 1;
      else ++col;
    }
    throw Error(what_ + ": line " + std::to_string(line) + ", column " + std::to_string(col) + ": " + why);
  }
  [[noreturn]] void fail(const std::string& why) const { fail_at(pos_, why); }

  bool at_end() const { return pos_ >= s_.size(); }
  char peek(size_t ahead = 0) const { return pos_ + ahead < s_.size() ? s_[pos_ + ahead] : '\0'; }
  bool consume(std::string_view t) {
    if (s_.substr(pos_, t.size()) != t) return false;
    pos_ += t.size();
    return true;
  }
  void skip_space() {
    while (!at_end()) {
      char c = peek();
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
        ++pos_;
      } else if (c == '#') {
        while (!at_end() && peek() != '\n') ++pos_;
      } else {
        break;
      }
    }
  }
  static bool name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  }
  std::string parse_name() {
    const size_t start = pos_;
    while (!at_end() && name_char(peek())) ++pos_;
    if (pos_ == start) fail(at_end() ? "expected a rule name" : std::string("unexpected '") + peek() + "'");
    return std::string(s_.substr(start, pos_ - start));
  }
  // Is a rule definition (`name ::=`) next? Then the current sequence has ended.
  bool rule_definition_ahead() const {
    size_t p = pos_;
    while (p < s_.size() && name_char(s_[p])) ++p;
    if (p == pos_) return false;
    while (p < s_.size() && (s_[p] == ' ' || s_[p] == '\t' || s_[p] == '\n' || s_[p] == '\r')) ++p;
    return s_.substr(p, 3) == "::=";
  }

  int32_t rule_id(const std::string& name, size_t at) {
    auto [it, added] = by_name_.try_emplace(name, static_cast<int32_t>(rules_.size()));
    if (added) new_rule(name, at);
    return it->second;
  }
  int32_t new_rule(const std::string& name, size_t at) {
    rules_.emplace_back();
    defined_.push_back(false);
    first_use_.push_back(at);
    g_->rule_names.push_back(name);
    return static_cast<int32_t>(rules_.size() - 1);
  }
  // A rule of the compiler's own (groups, repetitions), defined on the spot.
  int32_t aux_rule(Alternatives alts) {
    const int32_t id = new_rule("aux" + std::to_string(rules_.size()), pos_);
    defined_[static_cast<size_t>(id)] = true;
    count(alts);
    rules_[static_cast<size_t>(id)] = std::move(alts);
    return id;
  }
  void count(const Alternatives& alts) {
    for (const auto& seq : alts) n_elements_ += seq.size() + 1;
    if (n_elements_ > kMaxGrammarElements)
      fail("the grammar grows past " + std::to_string(kMaxGrammarElements) + " elements (repetition counts too large)");
  }

  Element byte_element(uint8_t b) {
    ByteSet set;
    set.add(b);
    return set_element(set);
  }
  Element set_element(const ByteSet& set) {
    auto [it, added] = set_ids_.try_emplace(set.bits, static_cast<int32_t>(g_->byte_sets.size()));
    if (added) g_->byte_sets.push_back(set);
    return {Element::kBytes, it->second};
  }
  Element class_element(const std::vector<std::pair<uint32_t, uint32_t>>& ranges, bool negated) {
    std::vector<std::pair<uint32_t, uint32_t>> r = ranges;
    std::sort(r.begin(), r.end());
    if (negated) {
      std::vector<std::pair<uint32_t, uint32_t>> inv;
      uint32_t next = 0;
      for (auto [lo, hi] : r) {
        if (lo > next) inv.emplace_back(next, lo - 1);
        next = std::max(next, hi + 1);
      }
      if (next <= kMaxCodepoint) inv.emplace_back(next, kMaxCodepoint);
      r.swap(inv);
    }
    Utf8Class cls;
    for (auto [lo, hi] : r) add_utf8_range(lo, hi, cls);
    if (cls.seqs.empty()) {
      if (cls.ascii == ByteSet{}) fail("the character class matches no character");
      return set_element(cls.ascii);
    }
    g_->classes.push_back(std::move(cls));
    return {Element::kClass, static_cast<int32_t>(g_->classes.size() - 1)};
  }

  int hex_digit(char c) const {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }
  // One character of a string or class, escapes decoded.
  uint32_t parse_char() {
    if (at_end()) fail("unterminated string or character class");
    auto c = static_cast<unsigned char>(peek());
    if (c == '\\') {
      ++pos_;
      if (at_end()) fail("unterminated escape");
      char e = peek();
      ++pos_;
      switch (e) {
        case 'n': return '\n';
        case 'r': return '\r';
        case 't': return '\t';
        case 'f': return '\f';
        case 'v': return '\v';
        case '0': return 0;
        case '\\': case '"': case '\'': case ']': case '[': case '-': case '/': case '^': case '.':
          return static_cast<unsigned char>(e);
        case 'x': case 'u': case 'U': {
          const int n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          uint32_t v = 0;
          for (int k = 0; k < n; ++k) {
            int d = hex_digit(peek());
            if (d < 0) fail(std::string("\\") + e + " needs " + std::to_string(n) + " hexadecimal digits");
            v = v * 16 + static_cast<uint32_t>(d);
            ++pos_;
          }
          if (v > kMaxCodepoint) fail("the code point is past U+10FFFF");
          return v;
        }
        default:
          --pos_;
          fail(std::string("unknown escape '\\") + e + "'");
      }
    }
    // A UTF-8 character of the grammar text itself.
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || pos_ + static_cast<size_t>(len) > s_.size()) fail("invalid UTF-8 in the grammar");
    uint32_t cp = len == 1 ? c : c & (0xFF >> (len + 1));
    for (int k = 1; k < len; ++k) {
      auto cc = static_cast<unsigned char>(s_[pos_ + static_cast<size_t>(k)]);
      if ((cc & 0xC0) != 0x80) fail("invalid UTF-8 in the grammar");
      cp = (cp << 6) | (cc & 0x3F);
    }
    pos_ += static_cast<size_t>(len);
    return cp;
  }

  Sequence parse_literal(char quote) {
    Sequence seq;
    while (true) {
      if (at_end()) fail("unterminated string");
      if (peek() == quote) {
        ++pos_;
        break;
      }
      std::string bytes;
      tokenizer::utf8_append(bytes, parse_char());
      for (char b : bytes) seq.push_back(byte_element(static_cast<uint8_t>(b)));
    }
    return seq;
  }

  Element parse_class() {
    bool negated = consume("^");
    std::vector<std::pair<uint32_t, uint32_t>> ranges;
    while (true) {
      if (at_end()) fail("unterminated character class");
      if (peek() == ']') {
        ++pos_;
        break;
      }
      uint32_t lo = parse_char(), hi = lo;
      if (peek() == '-' && peek(1) != ']' && pos_ + 1 < s_.size()) {
        ++pos_;
        hi = parse_char();
        if (hi < lo) fail("the range's end is below its start");
      }
      ranges.emplace_back(lo, hi);
    }
    if (ranges.empty() && !negated) fail("empty character class");
    return class_element(ranges, negated);
  }

  int parse_count() {
    const size_t start = pos_;
    int64_t v = 0;
    while (!at_end() && peek() >= '0' && peek() <= '9') {
      v = v * 10 + (peek() - '0');
      if (v > kMaxRepetition) fail("repetition counts are limited to " + std::to_string(kMaxRepetition));
      ++pos_;
    }
    if (pos_ == start) fail("expected a number");
    return static_cast<int>(v);
  }

  // `item` repeated min..max times (max < 0: unbounded), as elements of the current sequence.
  Sequence repeat(Sequence item, int min, int max) {
    if (item.empty()) return item;  // "" repeated is still ""
    Element one = item.size() == 1 ? item[0] : Element{Element::kRule, aux_rule({item})};
    Sequence out(static_cast<size_t>(min), one);
    n_elements_ += static_cast<size_t>(min);
    if (max < 0) {
      // star ::= one star | ""
      const int32_t star = aux_rule({});
      rules_[static_cast<size_t>(star)] = {{one, Element{Element::kRule, star}}, {}};
      n_elements_ += 4;
      out.push_back({Element::kRule, star});
    } else if (max > min) {
      // opt_k ::= one opt_{k-1} | "" , nested so that at most max - min more follow.
      int32_t inner = -1;
      for (int k = 0; k < max - min; ++k) {
        Sequence first = {one};
        if (inner >= 0) first.push_back({Element::kRule, inner});
        inner = aux_rule({first, {}});
      }
      out.push_back({Element::kRule, inner});
    }
    if (n_elements_ > kMaxGrammarElements)
      fail("the grammar grows past " + std::to_string(kMaxGrammarElements) + " elements (repetition counts too large)");
    return out;
  }

  Sequence parse_item() {
    Sequence item;
    const char c = peek();
    if (c == '"' || c == '\'') {
      ++pos_;
      item = parse_literal(c);
    } else if (c == '[') {
      ++pos_;
      item = {parse_class()};
    } else if (c == '.') {
      ++pos_;
      item = {class_element({{'\n', '\n'}}, true)};
    } else if (c == '(') {
      ++pos_;
      if (++depth_ > 200) fail("groups nest deeper than 200");
      Alternatives alts = parse_alternatives(true);
      --depth_;
      if (!consume(")")) fail("expected ')'");
      item = {{Element::kRule, aux_rule(std::move(alts))}};
    } else if (name_char(c)) {
      const size_t at = pos_;
      item = {{Element::kRule, rule_id(parse_name(), at)}};
    } else {
      fail(at_end() ? "unexpected end of the grammar" : std::string("unexpected '") + c + "'");
    }
    // Quantifiers bind to the item just before them.
    while (true) {
      skip_space();
      if (consume("*")) item = repeat(std::move(item), 0, -1);
      else if (consume("+")) item = repeat(std::move(item), 1, -1);
      else if (consume("?")) item = repeat(std::move(item), 0, 1);
      else if (peek() == '{') {
        ++pos_;
        skip_space();
        int min = parse_count(), max = min;
        skip_space();
        if (consume(",")) {
          skip_space();
          max = peek() == '}' ? -1 : parse_count();
          skip_space();
        }
        if (!consume("}")) fail("expected '}'");
        if (max >= 0 && max < min) fail("the repetition's maximum is below its minimum");
        item = repeat(std::move(item), min, max);
      } else {
        break;
      }
    }
    return item;
  }

  Alternatives parse_alternatives(bool in_group) {
    Alternatives alts(1);
    while (true) {
      skip_space();
      if (at_end()) break;
      const char c = peek();
      if (c == '|') {
        ++pos_;
        alts.emplace_back();
        continue;
      }
      if (c == ')') {
        if (!in_group) fail("unmatched ')'");
        break;
      }
      if (!in_group && rule_definition_ahead()) break;
      Sequence item = parse_item();
      alts.back().insert(alts.back().end(), item.begin(), item.end());
    }
    count(alts);
    return alts;
  }

  void flatten() {
    g_->alternatives.resize(rules_.size());
    g_->elements.reserve(n_elements_);
    for (size_t r = 0; r < rules_.size(); ++r) {
      for (const Sequence& seq : rules_[r]) {
        g_->alternatives[r].push_back(static_cast<int32_t>(g_->elements.size()));
        g_->elements.insert(g_->elements.end(), seq.begin(), seq.end());
        g_->elements.push_back({Element::kEnd, 0});
      }
    }
    rules_.clear();
  }

  // A rule that can reach itself before any byte is matched would make the matcher recurse
  // forever: find one through the rules each alternative can start with (skipping nullable ones).
  void check_left_recursion() const {
    const Grammar& g = *g_;
    const size_t n = g.alternatives.size();
    std::vector<bool> nullable(n, false);
    for (bool changed = true; changed;) {
      changed = false;
      for (size_t r = 0; r < n; ++r) {
        if (nullable[r]) continue;
        for (int32_t start : g.alternatives[r]) {
          size_t p = static_cast<size_t>(start);
          while (g.elements[p].kind == Element::kRule && nullable[static_cast<size_t>(g.elements[p].value)]) ++p;
          if (g.elements[p].kind == Element::kEnd) {
            nullable[r] = changed = true;
            break;
          }
        }
      }
    }
    std::vector<std::vector<int32_t>> starts(n);
    for (size_t r = 0; r < n; ++r)
      for (int32_t start : g.alternatives[r])
        for (size_t p = static_cast<size_t>(start); g.elements[p].kind == Element::kRule; ++p) {
          starts[r].push_back(g.elements[p].value);
          if (!nullable[static_cast<size_t>(g.elements[p].value)]) break;
        }
    // Iterative depth-first search for a cycle (0 new, 1 on the path, 2 done).
    std::vector<uint8_t> state(n, 0);
    for (size_t r0 = 0; r0 < n; ++r0) {
      if (state[r0]) continue;
      std::vector<std::pair<int32_t, size_t>> path{{static_cast<int32_t>(r0), 0}};
      state[r0] = 1;
      while (!path.empty()) {
        auto& [r, i] = path.back();
        if (i < starts[static_cast<size_t>(r)].size()) {
          int32_t next = starts[static_cast<size_t>(r)][i++];
          if (state[static_cast<size_t>(next)] == 1)
            throw Error(what_ + ": the rule '" + display_name(next) +
                        "' is left-recursive (it can reach itself before matching a character)");
          if (state[static_cast<size_t>(next)] == 0) {
            state[static_cast<size_t>(next)] = 1;
            path.push_back({next, 0});
          }
        } else {
          state[static_cast<size_t>(r)] = 2;
          path.pop_back();
        }
      }
    }
  }
  std::string display_name(int32_t r) const {
    const std::string& name = g_->rule_names[static_cast<size_t>(r)];
    return by_name_.count(name) ? name : name + " (a group or repetition)";
  }

  std::string_view s_;
  std::string what_;
  size_t pos_ = 0;
  int depth_ = 0;
  size_t n_elements_ = 0;
  std::shared_ptr<Grammar> g_ = std::make_shared<Grammar>();
  std::vector<Alternatives> rules_;
  std::vector<bool> defined_;
  std::vector<size_t> first_use_;
  std::unordered_map<std::string, int32_t> by_name_;
  std::map<std::array<uint64_t, 4>, int32_t> set_ids_;
};

}  // namespace

std::shared_ptr<const Grammar> compile_ebnf(std::string_view text, const std::string& what) {
  return Compiler(text, what).run();
}

std::string ebnf_literal(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out = "\"";
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20 || c == 0x7F) {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += ch;  // UTF-8 passes through as the characters it encodes
    }
  }
  return out + "\"";
}

}  // namespace quanta::grammar
