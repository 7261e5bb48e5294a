// Regular expressions translated to EBNF expressions (grammar.h).
//
// The common syntax of Python's re and ECMAScript: literals, `.`, classes with ranges and
// negation, \d \w \s and their negations, escapes (\n \t \xHH \uHHHH ...), groups ((...),
// (?:...), named), alternation, and the quantifiers * + ? {n} {n,} {n,m} (lazy and
// possessive forms match the same language). What a grammar cannot express — lookaround,
// backreferences, word boundaries, inline flags, anchors inside the pattern — is refused
// naming its position. A pattern matches the whole text (outlines' and SGLang's meaning).
#include <algorithm>

#include "quanta/core/error.h"
#include "quanta/grammar/grammar.h"

namespace quanta::grammar {
namespace {

using Ranges = std::vector<std::pair<uint32_t, uint32_t>>;
constexpr uint32_t kMaxCp = 0x10FFFF;

Ranges normalize(Ranges r) {
  std::sort(r.begin(), r.end());
  Ranges out;
  for (auto [lo, hi] : r) {
    if (!out.empty() && lo <= out.back().second + 1) out.back().second = std::max(out.back().second, hi);
    else out.emplace_back(lo, hi);
  }
  return out;
}

Ranges complement(const Ranges& in) {
  Ranges r = normalize(in), out;
  uint32_t next = 0;
  for (auto [lo, hi] : r) {
    if (lo > next) out.emplace_back(next, lo - 1);
    next = hi + 1;
  }
  if (next <= kMaxCp) out.emplace_back(next, kMaxCp);
  return out;
}

Ranges intersect(const Ranges& a, const Ranges& b) {
  Ranges x = normalize(a), y = normalize(b), out;
  for (auto [alo, ahi] : x)
    for (auto [blo, bhi] : y) {
      uint32_t lo = std::max(alo, blo), hi = std::min(ahi, bhi);
      if (lo <= hi) out.emplace_back(lo, hi);
    }
  return out;
}

// Characters a JSON string holds unescaped.
Ranges json_safe() { return complement({{0, 0x1F}, {'"', '"'}, {'\\', '\\'}}); }

std::string hex_cp(uint32_t cp) {
  static const char* hex = "0123456789ABCDEF";
  std::string s = "\\U";
  for (int k = 7; k >= 0; --k) s += hex[(cp >> (4 * k)) & 15];
  return s;
}

const Ranges kDigit = {{'0', '9'}};
const Ranges kWord = {{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}};
const Ranges kSpace = {{'\t', '\r'}, {' ', ' '}};

class RegexTranslator {
 public:
  RegexTranslator(std::string_view p, bool json) : p_(p), json_(json) {}

  std::string run(bool anchored) {
    bool start = false, end = false;
    if (!p_.empty() && p_[0] == '^') {
      start = true;
      pos_ = 1;
    }
    if (p_.size() > pos_ && p_.back() == '$' && !escaped_at(p_.size() - 1)) {
      end = true;
      p_.remove_suffix(1);
    }
    std::string body = alternatives();
    if (pos_ < p_.size()) fail(p_[pos_] == ')' ? "unmatched ')'" : "unexpected character");
    if (!anchored) {  // JSON Schema's pattern: a match anywhere in the string
      const std::string any = emit_ranges(Ranges{{0, kMaxCp}});
      if (!start) body = any + "* (" + body + ")";
      if (!end) body = "(" + body + ") " + any + "*";
    }
    return "(" + body + ")";
  }

 private:
  [[noreturn]] void fail(const std::string& why) const {
    throw Error("regex: at position " + std::to_string(pos_) + ": " + why);
  }
  bool escaped_at(size_t i) const {
    size_t n = 0;
    while (i > n && p_[i - n - 1] == '\\') ++n;
    return n % 2 == 1;
  }
  bool at_end() const { return pos_ >= p_.size(); }
  char peek() const { return at_end() ? '\0' : p_[pos_]; }

  // "[...]" for the ranges; json mode keeps only characters a JSON string holds unescaped.
  std::string emit_ranges(Ranges r) const {
    if (json_) r = intersect(r, json_safe());
    // UTF-16 surrogates (\uD800-\uDFFF) are not characters: text never holds them.
    Ranges chars;
    for (auto [lo, hi] : normalize(r)) {
      if (lo < 0xD800) chars.push_back({lo, std::min<uint32_t>(hi, 0xD7FF)});
      if (hi > 0xDFFF) chars.push_back({std::max<uint32_t>(lo, 0xE000), hi});
    }
    r = std::move(chars);
    if (r.empty()) throw Error("regex: a character class matches no character" + std::string(json_ ? " allowed unescaped in a JSON string" : ""));
    std::string s = "[";
    for (auto [lo, hi] : r) s += lo == hi ? hex_cp(lo) : hex_cp(lo) + "-" + hex_cp(hi);
    return s + "]";
  }
  std::string emit_char(uint32_t cp) const {
    if (!json_) return emit_ranges({{cp, cp}});
    std::string text;  // the character as it appears inside a JSON string
    if (cp == '"') text = "\\\"";
    else if (cp == '\\') text = "\\\\";
    else if (cp < 0x20) {
      static const char* hex = "0123456789abcdef";
      text = std::string("\\u00") + hex[cp >> 4] + hex[cp & 15];
    } else {
      return emit_ranges({{cp, cp}});
    }
    return ebnf_literal(text);
  }

  uint32_t utf8_char() {
    auto c = static_cast<unsigned char>(p_[pos_]);
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || pos_ + static_cast<size_t>(len) > p_.size()) fail("invalid UTF-8");
    uint32_t cp = len == 1 ? c : c & (0xFF >> (len + 1));
    for (int k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(p_[pos_ + static_cast<size_t>(k)]) & 0x3F);
    pos_ += static_cast<size_t>(len);
    return cp;
  }
  uint32_t hex_value(int digits) {
    uint32_t v = 0;
    for (int k = 0; k < digits; ++k) {
      char c = peek();
      int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
      if (d < 0) fail("expected " + std::to_string(digits) + " hexadecimal digits");
      v = v * 16 + static_cast<uint32_t>(d);
      ++pos_;
    }
    if (v > kMaxCp) fail("the code point is past U+10FFFF");
    return v;
  }
  // After a backslash: a set of characters (one range for a plain escape).
  Ranges escape(bool in_class) {
    if (at_end()) fail("the pattern ends in a backslash");
    const char e = p_[pos_++];
    switch (e) {
      case 'd': return kDigit;
      case 'D': return complement(kDigit);
      case 'w': return kWord;
      case 'W': return complement(kWord);
      case 's': return kSpace;
      case 'S': return complement(kSpace);
      case 'n': return {{'\n', '\n'}};
      case 't': return {{'\t', '\t'}};
      case 'r': return {{'\r', '\r'}};
      case 'f': return {{'\f', '\f'}};
      case 'v': return {{'\v', '\v'}};
      case '0': return {{0, 0}};
      case 'x': { uint32_t v = hex_value(2); return {{v, v}}; }
      case 'u': { uint32_t v = hex_value(4); return {{v, v}}; }
      case 'b':
        if (in_class) return {{'\b', '\b'}};
        --pos_;
        fail("word boundaries (\\b) are not supported");
      case 'B': --pos_; fail("\\B is not supported");
      case 'A': case 'Z': case 'z': case 'G': --pos_; fail(std::string("the anchor \\") + e + " is not supported");
      default:
        if (e >= '1' && e <= '9') {
          --pos_;
          fail("backreferences are not supported");
        }
        if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z')) {
          --pos_;
          fail(std::string("unknown escape \\") + e);
        }
        --pos_;
        uint32_t cp = utf8_char();
        return {{cp, cp}};
    }
  }

  Ranges char_class() {  // after '['
    bool negated = false;
    if (peek() == '^') {
      negated = true;
      ++pos_;
    }
    Ranges r;
    bool first = true;
    while (true) {
      if (at_end()) fail("unterminated character class");
      if (peek() == ']' && !first) {
        ++pos_;
        break;
      }
      first = false;
      Ranges item;
      if (peek() == '\\') {
        ++pos_;
        item = escape(true);
      } else if (peek() == '[' && pos_ + 1 < p_.size() && p_[pos_ + 1] == ':') {
        fail("POSIX classes ([:alpha:]) are not supported");
      } else {
        uint32_t cp = utf8_char();
        item = {{cp, cp}};
      }
      if (item.size() == 1 && item[0].first == item[0].second && peek() == '-' && pos_ + 1 < p_.size() &&
          p_[pos_ + 1] != ']') {
        ++pos_;
        Ranges hi_item;
        if (peek() == '\\') {
          ++pos_;
          hi_item = escape(true);
        } else {
          uint32_t cp = utf8_char();
          hi_item = {{cp, cp}};
        }
        if (hi_item.size() != 1 || hi_item[0].first != hi_item[0].second) fail("a range must end in a single character");
        if (hi_item[0].first < item[0].first) fail("the range's end is below its start");
        item = {{item[0].first, hi_item[0].first}};
      }
      r.insert(r.end(), item.begin(), item.end());
    }
    return negated ? complement(r) : r;
  }

  std::string atom() {
    const char c = peek();
    if (c == '(') {
      ++pos_;
      if (peek() == '?') {
        ++pos_;
        if (peek() == ':') {
          ++pos_;
        } else if (peek() == 'P' && pos_ + 1 < p_.size() && p_[pos_ + 1] == '<') {
          pos_ = p_.find('>', pos_);
          if (pos_ == std::string_view::npos) fail("unterminated group name");
          ++pos_;
        } else if (peek() == '<' && pos_ + 1 < p_.size() && p_[pos_ + 1] != '=' && p_[pos_ + 1] != '!') {
          pos_ = p_.find('>', pos_);
          if (pos_ == std::string_view::npos) fail("unterminated group name");
          ++pos_;
        } else {
          fail("lookaround, inline flags and other (?...) groups are not supported");
        }
      }
      if (++depth_ > 200) fail("groups nest deeper than 200");
      std::string inner = alternatives();
      --depth_;
      if (peek() != ')') fail("expected ')'");
      ++pos_;
      return "(" + inner + ")";
    }
    if (c == '[') {
      ++pos_;
      return emit_ranges(char_class());
    }
    if (c == '.') {
      ++pos_;
      return emit_ranges(complement({{'\n', '\n'}}));
    }
    if (c == '\\') {
      ++pos_;
      Ranges r = escape(false);
      if (r.size() == 1 && r[0].first == r[0].second) return emit_char(r[0].first);
      return emit_ranges(r);
    }
    if (c == '^' || c == '$') fail("anchors are supported only at the start and the end of the pattern");
    if (c == '*' || c == '+' || c == '?') fail("nothing to repeat");
    return emit_char(utf8_char());
  }

  // {n}, {n,}, {n,m}; anything else after '{' is a literal brace (as in Python).
  bool quantifier(std::string& q) {
    const char c = peek();
    if (c == '*' || c == '+' || c == '?') {
      ++pos_;
      q = std::string(1, c);
    } else if (c == '{') {
      size_t p = pos_ + 1;
      auto digits = [&] {
        size_t s = p;
        while (p < p_.size() && p_[p] >= '0' && p_[p] <= '9') ++p;
        return std::string(p_.substr(s, p - s));
      };
      std::string lo = digits(), hi;
      bool comma = false;
      if (p < p_.size() && p_[p] == ',') {
        comma = true;
        ++p;
        hi = digits();
      }
      if (lo.empty() || p >= p_.size() || p_[p] != '}') return false;
      // The grammar's own limits, said here in the regex's terms.
      if (lo.size() > 6 || hi.size() > 6 || std::stoi(lo) > kMaxRepetition || (!hi.empty() && std::stoi(hi) > kMaxRepetition))
        fail("repetition counts are limited to " + std::to_string(kMaxRepetition));
      if (!hi.empty() && std::stoi(hi) < std::stoi(lo)) fail("the repetition's maximum is below its minimum");
      pos_ = p + 1;
      q = "{" + lo + (comma ? "," + hi : "") + "}";
    } else {
      return false;
    }
    if (peek() == '?' || peek() == '+') ++pos_;  // lazy or possessive: the same language
    return true;
  }

  std::string sequence() {
    std::string out;
    while (!at_end() && peek() != '|' && peek() != ')') {
      std::string a = atom(), q, simple;
      // Stacked * + ? collapse to one ((a+)* is a*): nested repetitions of one item are
      // ambiguous, and their matching stacks multiply.
      while (quantifier(q)) {
        if (q.size() == 1 && !simple.empty()) {
          simple = simple == "+" && q == "+" ? "+" : simple == "?" && q == "?" ? "?" : "*";
          continue;
        }
        if (!simple.empty()) a = "(" + a + ")" + simple;
        simple.clear();
        if (q.size() == 1) simple = q;
        else a = "(" + a + ")" + q;
      }
      if (!simple.empty()) a = "(" + a + ")" + simple;
      out += (out.empty() ? "" : " ") + a;
    }
    return out.empty() ? "\"\"" : out;
  }

  std::string alternatives() {
    std::string out = sequence();
    while (peek() == '|') {
      ++pos_;
      out += " | " + sequence();
    }
    return out;
  }

  std::string_view p_;
  bool json_;
  size_t pos_ = 0;
  int depth_ = 0;
};

}  // namespace

std::string regex_to_expression(std::string_view pattern, bool json_string, bool anchored) {
  return RegexTranslator(pattern, json_string).run(anchored);
}

std::string regex_to_ebnf(std::string_view pattern) { return "root ::= " + regex_to_expression(pattern, false, true) + "\n"; }

}  // namespace quanta::grammar
