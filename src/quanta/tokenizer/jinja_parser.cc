#include "quanta/tokenizer/jinja_parser.h"

#include <algorithm>
#include <cstring>

namespace quanta::tokenizer::jinja {

namespace {

constexpr int kMaxParseDepth = 100;

enum class Tok : uint8_t { kData, kVarBegin, kVarEnd, kBlockBegin, kBlockEnd, kName, kString, kInt, kFloat, kOp, kEof };

struct Token {
  Tok type;
  uint32_t offset;
  std::string text;  // data, name, operator, or the literal's source
  Value value;       // string / number literals
};

[[noreturn]] void syntax_error(const std::string& message, size_t offset, const char* type = "TemplateSyntaxError") {
  throw PositionedError(PyError(type, message), static_cast<uint32_t>(offset));
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

// Length of the whitespace (Python's \s) starting at s[p].
size_t space_len(const std::string& s, size_t p) {
  size_t q = p;
  while (q < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[q]);
    if (c < 0x80) {
      if (!py_isspace(c)) break;
      ++q;
      continue;
    }
    std::u32string one = utf8_decode(std::string_view(s).substr(q, c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2));
    if (one.empty() || !py_isspace(one[0])) break;
    q += c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
  }
  return q - p;
}

// True if s is one or more whitespace characters.
bool all_space(std::string_view s) {
  if (s.empty()) return false;
  for (char32_t c : utf8_decode(s))
    if (!py_isspace(c)) return false;
  return true;
}

std::string rstrip_space(const std::string& s) {
  std::u32string u = utf8_decode(s);
  size_t e = u.size();
  while (e > 0 && py_isspace(u[e - 1])) --e;
  return utf8_encode(std::u32string_view(u).substr(0, e));
}

// Python's unicode-escape decoding of a string literal's body, as jinja2 applies it.
std::string unescape(const std::string& body, size_t offset) {
  std::string out;
  auto hex = [&](size_t& i, int n) {
    uint32_t v = 0;
    for (int k = 0; k < n; ++k, ++i) {
      char c = i < body.size() ? body[i] : 0;
      int d = is_digit(c) ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
      if (d < 0) syntax_error("truncated \\" + std::string(n == 2 ? "xXX" : n == 4 ? "uXXXX" : "UXXXXXXXX") + " escape", offset);
      v = v * 16 + d;
    }
    if (v > 0x10FFFF) syntax_error("illegal Unicode character", offset);
    if (v >= 0xD800 && v <= 0xDFFF) syntax_error("surrogate code points in string literals are not supported", offset);
    return static_cast<char32_t>(v);
  };
  for (size_t i = 0; i < body.size();) {
    char c = body[i];
    if (c != '\\') {
      out += c;
      ++i;
      continue;
    }
    if (i + 1 >= body.size()) syntax_error("\\ at end of string", offset);
    char e = body[i + 1];
    i += 2;
    switch (e) {
      case '\n': break;
      case '\\': out += '\\'; break;
      case '\'': out += '\''; break;
      case '"': out += '"'; break;
      case 'a': out += '\a'; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case 't': out += '\t'; break;
      case 'v': out += '\v'; break;
      case 'x': utf8_append(out, hex(i, 2)); break;
      case 'u': utf8_append(out, hex(i, 4)); break;
      case 'U': utf8_append(out, hex(i, 8)); break;
      case 'N': syntax_error("\\N{...} escapes are not supported", offset);
      default:
        if (e >= '0' && e <= '7') {
          uint32_t v = e - '0';
          for (int k = 0; k < 2 && i < body.size() && body[i] >= '0' && body[i] <= '7'; ++k, ++i) v = v * 8 + (body[i] - '0');
          utf8_append(out, v);
        } else if (static_cast<unsigned char>(e) >= 0x80) {
          // jinja2 first turns non-ASCII characters into \x/\u escapes, so a backslash before
          // one keeps both the backslash and that escape's text.
          size_t start = i - 1;
          size_t len = static_cast<unsigned char>(e) >= 0xF0 ? 4 : static_cast<unsigned char>(e) >= 0xE0 ? 3 : 2;
          char32_t cp = utf8_decode(std::string_view(body).substr(start, len))[0];
          char buf[16];
          if (cp < 0x100) std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(cp));
          else if (cp < 0x10000) std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(cp));
          else std::snprintf(buf, sizeof buf, "\\U%08x", static_cast<unsigned>(cp));
          out += '\\';
          out += buf;
          i = start + len;
        } else {
          out += '\\';
          out += e;
        }
    }
  }
  return out;
}

// Splits the source into data and the tokens inside {{ }} and {% %}, applying whitespace control
// to the data on the way, with jinja2's lexer rules (lexer.py tokeniter):
//  - `{%-`/`{{-`/`{#-` strip all whitespace before the tag, `-%}`/`-}}`/`-#}` all after it;
//  - lstrip_blocks strips spaces and tabs between a line start and `{%` or `{#` (not `{{`),
//    unless the tag opens with `+`; "line start" includes the text right after a tag that
//    itself ended with a newline;
//  - trim_blocks drops one newline right after `%}` or `#}` (not after `+%}`).
// Inside a tag, `}}` and `%}` only end it when no bracket is open, so dict literals work.
class Lexer {
 public:
  explicit Lexer(const std::string& s) : s_(s) {}

  std::vector<Token> run() {
    size_t pos = 0;
    bool line_starting = true;
    const size_t n = s_.size();
    while (pos < n) {
      size_t start = find_opener(pos);
      if (start == std::string::npos) {
        emit(Tok::kData, pos, s_.substr(pos));
        break;
      }
      char kind = s_[start + 1];
      size_t p = start + 2;
      char sign = 0;
      if (p < n && (s_[p] == '-' || s_[p] == '+')) sign = s_[p++];
      std::string text = s_.substr(pos, start - pos);
      text = strip_text(text, sign, kind != '{', line_starting);
      if (!text.empty()) emit(Tok::kData, pos, text);
      if (kind == '#') {
        size_t q = s_.find("#}", p);
        if (q == std::string::npos) syntax_error("Missing end of comment tag", start);
        pos = q + 2;
        if (q > p && s_[q - 1] == '-') pos += space_len(s_, pos);
        else if (!(q > p && s_[q - 1] == '+') && pos < n && s_[pos] == '\n') ++pos;
        line_starting = s_[pos - 1] == '\n';
        continue;
      }
      if (kind == '%' && lex_raw(start, p, pos, line_starting)) continue;
      emit(kind == '%' ? Tok::kBlockBegin : Tok::kVarBegin, start, "");
      pos = lex_tag(kind == '%', p);
      line_starting = s_[pos - 1] == '\n';
    }
    emit(Tok::kEof, n, "");
    return std::move(out_);
  }

 private:
  size_t find_opener(size_t pos) const {
    while (true) {
      size_t q = s_.find('{', pos);
      if (q == std::string::npos || q + 1 >= s_.size()) return std::string::npos;
      char c = s_[q + 1];
      if (c == '{' || c == '%' || c == '#') return q;
      pos = q + 1;
    }
  }

  // The whitespace control that applies to the text before a tag.
  static std::string strip_text(const std::string& text, char sign, bool lstrip_kind, bool line_starting) {
    if (sign == '-') return rstrip_space(text);
    if (sign == '+' || !lstrip_kind) return text;
    size_t nl = text.rfind('\n');
    size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
    if ((l_pos > 0 || line_starting) && all_space(std::string_view(text).substr(l_pos))) return text.substr(0, l_pos);
    return text;
  }

  // {% raw %}...{% endraw %}: the body is data. Returns false if the tag is not `raw`.
  bool lex_raw(size_t start, size_t p, size_t& pos, bool& line_starting) {
    size_t q = p + space_len(s_, p);
    if (s_.compare(q, 3, "raw") != 0) return false;
    q += 3;
    q += space_len(s_, q);
    if (s_.compare(q, 3, "-%}") == 0) q += 3 + space_len(s_, q + 3);
    else if (s_.compare(q, 2, "%}") == 0) q += 2;
    else return false;
    // Find `{%[-+]? endraw [-+]?%}`.
    size_t search = q;
    while (true) {
      size_t b = s_.find("{%", search);
      if (b == std::string::npos) syntax_error("Missing end of raw directive", start);
      size_t r = b + 2;
      char sign = 0;
      if (r < s_.size() && (s_[r] == '-' || s_[r] == '+')) sign = s_[r++];
      r += space_len(s_, r);
      if (s_.compare(r, 6, "endraw") != 0) {
        search = b + 2;
        continue;
      }
      r += 6;
      r += space_len(s_, r);
      size_t end;
      if (s_.compare(r, 3, "+%}") == 0) end = r + 3;
      else if (s_.compare(r, 3, "-%}") == 0) end = r + 3 + space_len(s_, r + 3);
      else if (s_.compare(r, 2, "%}") == 0) end = r + 2 + (r + 2 < s_.size() && s_[r + 2] == '\n');
      else {
        search = b + 2;
        continue;
      }
      std::string text = strip_text(s_.substr(q, b - q), sign, true, s_[q - 1] == '\n');
      if (!text.empty()) emit(Tok::kData, q, text);
      pos = end;
      line_starting = s_[pos - 1] == '\n';
      return true;
    }
  }

  // Tokens inside {{ }} or {% %} from p; returns the position after the closing delimiter.
  size_t lex_tag(bool block, size_t p) {
    std::vector<char> brackets;
    const size_t n = s_.size();
    while (true) {
      if (p >= n) syntax_error(std::string("unexpected end of template, expected '") + (block ? "%}" : "}}") + "'", p);
      if (brackets.empty()) {
        if (block) {
          if (s_.compare(p, 3, "-%}") == 0) return emit(Tok::kBlockEnd, p, ""), p + 3 + space_len(s_, p + 3);
          if (s_.compare(p, 3, "+%}") == 0) return emit(Tok::kBlockEnd, p, ""), p + 3;
          if (s_.compare(p, 2, "%}") == 0) return emit(Tok::kBlockEnd, p, ""), p + 2 + (p + 2 < n && s_[p + 2] == '\n');
        } else {
          if (s_.compare(p, 3, "-}}") == 0) return emit(Tok::kVarEnd, p, ""), p + 3 + space_len(s_, p + 3);
          if (s_.compare(p, 2, "}}") == 0) return emit(Tok::kVarEnd, p, ""), p + 2;
        }
      }
      size_t ws = space_len(s_, p);
      if (ws) {
        p += ws;
        continue;
      }
      char c = s_[p];
      if (is_digit(c)) {
        p = lex_number(p);
      } else if (is_name_start(c)) {
        size_t q = p;
        while (q < n && is_name_char(s_[q])) ++q;
        emit(Tok::kName, p, s_.substr(p, q - p));
        p = q;
      } else if (c == '\'' || c == '"') {
        size_t q = p + 1;
        while (q < n && s_[q] != c) q += (s_[q] == '\\') ? 2 : 1;
        if (q >= n) unexpected_char(p);
        Token t{Tok::kString, static_cast<uint32_t>(p), s_.substr(p, q + 1 - p), {}};
        t.value = Value::string(unescape(s_.substr(p + 1, q - p - 1), p));
        out_.push_back(std::move(t));
        p = q + 1;
      } else {
        static const char* kOps[] = {"//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%", "~", "[", "]", "(",
                                     ")", "{", "}", ">", "<", "=", ".", ":", "|", ",", ";"};
        const char* op = nullptr;
        for (const char* o : kOps)
          if (s_.compare(p, std::strlen(o), o) == 0) {
            op = o;
            break;
          }
        if (!op) unexpected_char(p);
        std::string o(op);
        if (o == "(" || o == "[" || o == "{") {
          brackets.push_back(o == "(" ? ')' : o == "[" ? ']' : '}');
        } else if (o == ")" || o == "]" || o == "}") {
          if (brackets.empty()) syntax_error("unexpected '" + o + "'", p);
          if (brackets.back() != o[0]) syntax_error("unexpected '" + o + "', expected '" + brackets.back() + "'", p);
          brackets.pop_back();
        }
        emit(Tok::kOp, p, o);
        p += o.size();
      }
    }
  }

  [[noreturn]] void unexpected_char(size_t p) const {
    unsigned char u = static_cast<unsigned char>(s_[p]);
    std::string ch = s_.substr(p, u >= 0xF0 ? 4 : u >= 0xE0 ? 3 : u >= 0x80 ? 2 : 1);
    // jinja2 reports repr(char) and the position in characters.
    syntax_error("unexpected char " + py_repr(Value::string(ch)) + " at " + std::to_string(utf8_length(std::string_view(s_).substr(0, p))), p);
  }

  // Integer or float literal at p (jinja2's integer_re / float_re, with _ separators).
  size_t lex_number(size_t p) {
    const size_t n = s_.size();
    auto digits = [&](size_t q, auto ok) {  // (\d+_)*\d+ style run; returns end or q if none
      size_t r = q;
      while (r < n && (ok(s_[r]) || (s_[r] == '_' && r > q && r + 1 < n && ok(s_[r + 1])))) ++r;
      return r;
    };
    auto dec = [](char c) { return is_digit(c); };
    bool after_dot = p > 0 && s_[p - 1] == '.';
    size_t q = digits(p, dec);
    // Float: digits, then .digits and/or exponent.
    if (!after_dot) {
      size_t r = q;
      bool frac = false;
      if (r + 1 < n && s_[r] == '.' && is_digit(s_[r + 1])) r = digits(r + 1, dec), frac = true;
      size_t e = r;
      bool expo = false;
      if (e < n && (s_[e] == 'e' || s_[e] == 'E')) {
        size_t f = e + 1;
        if (f < n && (s_[f] == '+' || s_[f] == '-')) ++f;
        if (f < n && is_digit(s_[f])) r = digits(f, dec), expo = true;
      }
      if (frac || expo) {
        std::string text = s_.substr(p, r - p);
        std::string clean;
        for (char c : text)
          if (c != '_') clean += c;
        emit(Tok::kFloat, p, text);
        out_.back().value = Value::number(std::strtod(clean.c_str(), nullptr));
        return r;
      }
    }
    // Integer: 0b / 0o / 0x prefixes, [1-9](_?\d)*, or 0(_?0)*.
    int base = 10;
    size_t r;
    if (s_[p] == '0' && p + 1 < n && std::strchr("bBoOxX", s_[p + 1]) && p + 2 < n) {
      char k = static_cast<char>(s_[p + 1] | 0x20);
      base = k == 'b' ? 2 : k == 'o' ? 8 : 16;
      auto ok = [base](char c) {
        int d = is_digit(c) ? c - '0' : ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') ? (c | 0x20) - 'a' + 10 : 99;
        return d < base;
      };
      size_t s = p + 2;
      if (s < n && s_[s] == '_') ++s;
      r = digits(s, ok);
      if (r == s) base = 10, r = p + 1;  // just "0"
      else p += 0;
    } else if (s_[p] == '0') {
      r = p + 1;
      while (r < n && (s_[r] == '0' || (s_[r] == '_' && r + 1 < n && s_[r + 1] == '0'))) ++r;
    } else {
      r = q;
    }
    std::string text = s_.substr(p, r - p);
    uint64_t v = 0;
    size_t from = base == 10 ? 0 : 2;
    for (size_t i = from; i < text.size(); ++i) {
      char c = text[i];
      if (c == '_') continue;
      int d = is_digit(c) ? c - '0' : (c | 0x20) - 'a' + 10;
      if (v > (static_cast<uint64_t>(INT64_MAX) - d) / base) syntax_error("integer literal too large", p);
      v = v * base + d;
    }
    emit(Tok::kInt, p, text);
    out_.back().value = Value::integer(static_cast<int64_t>(v));
    return r;
  }

  void emit(Tok type, size_t offset, std::string text) {
    out_.push_back(Token{type, static_cast<uint32_t>(offset), std::move(text), {}});
  }

  const std::string& s_;
  std::vector<Token> out_;
};

NodePtr make(NodeKind kind, uint32_t offset) {
  auto n = std::make_unique<Node>();
  n->kind = kind;
  n->offset = offset;
  return n;
}

// Recursive descent over the tokens with jinja2's grammar and precedence (parser.py):
// condexpr < or < and < not < compare (in, not in, chains) < + - < ~ < * / // % < ** < unary
// < primary with postfix (.attr, [item], [a:b], call), then filters `|` and tests `is`, which
// bind to the unary expression before them (`-x|abs` is `(-x)|abs`, `a + b|f` is `a + (b|f)`).
class Parser {
 public:
  explicit Parser(std::vector<Token> toks) : t_(std::move(toks)) {}

  std::vector<NodePtr> parse() {
    std::vector<NodePtr> body = subparse({});
    if (cur().type != Tok::kEof) fail_unexpected();
    return body;
  }

 private:
  struct DepthGuard {
    explicit DepthGuard(Parser& p) : p_(p) {
      if (++p_.depth_ > kMaxParseDepth)
        syntax_error("template nested too deeply (more than " + std::to_string(kMaxParseDepth) + " levels)", p_.cur().offset);
    }
    ~DepthGuard() { --p_.depth_; }
    Parser& p_;
  };

  const Token& cur() const { return t_[i_]; }
  const Token& look() const { return t_[std::min(i_ + 1, t_.size() - 1)]; }
  const Token& advance() {
    const Token& t = t_[i_];
    if (i_ + 1 < t_.size()) ++i_;
    return t;
  }
  bool is_op(const char* op) const { return cur().type == Tok::kOp && cur().text == op; }
  bool is_name(const char* name) const { return cur().type == Tok::kName && cur().text == name; }
  bool skip_op(const char* op) {
    if (!is_op(op)) return false;
    advance();
    return true;
  }
  bool skip_name(const char* name) {
    if (!is_name(name)) return false;
    advance();
    return true;
  }

  static std::string describe(const Token& t) {
    switch (t.type) {
      case Tok::kData: return "template data";
      case Tok::kVarBegin: return "begin of print statement";
      case Tok::kVarEnd: return "end of print statement";
      case Tok::kBlockBegin: return "begin of statement block";
      case Tok::kBlockEnd: return "end of statement block";
      case Tok::kEof: return "end of template";
      case Tok::kString: return "string";
      case Tok::kInt: return "integer";
      case Tok::kFloat: return "float";
      default: return t.text;
    }
  }
  [[noreturn]] void fail_unexpected() const { syntax_error("unexpected '" + describe(cur()) + "'", cur().offset); }
  void expect_op(const char* op) {
    if (!skip_op(op)) syntax_error(std::string("expected token '") + op + "', got '" + describe(cur()) + "'", cur().offset);
  }
  void expect(Tok type, const char* what) {
    if (cur().type != type) syntax_error(std::string("expected token '") + what + "', got '" + describe(cur()) + "'", cur().offset);
    advance();
  }
  std::string expect_name() {
    if (cur().type != Tok::kName) syntax_error("expected token 'name', got '" + describe(cur()) + "'", cur().offset);
    return advance().text;
  }
  void expect_block_end() { expect(Tok::kBlockEnd, "end of statement block"); }

  // ----- statements -----

  std::vector<NodePtr> subparse(const std::vector<const char*>& end_names) {
    DepthGuard guard(*this);
    if (!end_names.empty()) end_stack_.push_back(end_names);
    struct Pop {
      std::vector<std::vector<const char*>>& stack;
      bool pushed;
      ~Pop() {
        if (pushed) stack.pop_back();
      }
    } pop{end_stack_, !end_names.empty()};
    std::vector<NodePtr> body;
    while (true) {
      const Token& t = cur();
      if (t.type == Tok::kData) {
        auto n = make(NodeKind::kText, t.offset);
        n->name = t.text;
        body.push_back(std::move(n));
        advance();
      } else if (t.type == Tok::kVarBegin) {
        advance();
        auto n = make(NodeKind::kOutput, t.offset);
        n->x = parse_tuple(false, true, {});
        expect(Tok::kVarEnd, "end of print statement");
        body.push_back(std::move(n));
      } else if (t.type == Tok::kBlockBegin) {
        advance();
        for (const char* e : end_names)
          if (is_name(e)) return body;
        body.push_back(parse_statement());
        expect_block_end();
      } else {
        if (!end_names.empty()) fail_tag("", t.offset);
        return body;
      }
    }
  }

  // Body up to one of end_names; with drop_end, also consumes that end tag's name.
  std::vector<NodePtr> parse_statements(const std::vector<const char*>& end_names, bool drop_end) {
    skip_op(":");
    expect_block_end();
    std::vector<NodePtr> body = subparse(end_names);
    if (drop_end) advance();
    return body;
  }

  // jinja2's message for an unknown tag or a missing end tag (parser._fail_ut_eof).
  [[noreturn]] void fail_tag(const std::string& name, uint32_t offset) const {
    std::string msg = name.empty() ? "Unexpected end of template." : "Encountered unknown tag '" + name + "'.";
    if (!end_stack_.empty()) {
      std::string looking;
      for (const char* e : end_stack_.back()) looking += (looking.empty() ? "'" : " or '") + std::string(e) + "'";
      bool expected = false;
      for (const auto& names : end_stack_)
        for (const char* e : names) expected |= name == e;
      if (!name.empty() && expected)
        msg += " You probably made a nesting mistake. Jinja is expecting this tag, but currently looking for " + looking + ".";
      else
        msg += " Jinja was looking for the following tags: " + looking + ".";
    }
    if (!tag_stack_.empty()) msg += " The innermost block that needs to be closed is '" + tag_stack_.back() + "'.";
    syntax_error(msg, offset);
  }

  NodePtr parse_statement() {
    const Token& t = cur();
    if (t.type != Tok::kName) syntax_error("tag name expected", t.offset);
    tag_stack_.push_back(t.text);
    NodePtr n = parse_tag();
    tag_stack_.pop_back();
    return n;
  }

  NodePtr parse_tag() {
    const Token& t = cur();
    const std::string tag = t.text;
    if (tag == "if") return parse_if();
    if (tag == "for") return parse_for();
    if (tag == "set") return parse_set();
    if (tag == "macro") return parse_macro();
    if (tag == "call") return parse_call_block();
    if (tag == "filter") return parse_filter_block();
    if (tag == "with") return parse_with();
    if (tag == "generation") {
      auto n = make(NodeKind::kGeneration, advance().offset);
      n->body = parse_statements({"endgeneration"}, true);
      return n;
    }
    if (tag == "break" || tag == "continue") {
      if (loop_depth_ == 0) syntax_error("'" + tag + "' outside of a for loop", t.offset);
      return make(tag == "break" ? NodeKind::kBreak : NodeKind::kContinue, advance().offset);
    }
    if (tag == "include" || tag == "import" || tag == "from" || tag == "extends" || tag == "block")
      syntax_error("'" + tag + "' is not supported: chat templates cannot load other templates", t.offset);
    tag_stack_.pop_back();  // an unknown tag is not an open block
    fail_tag(tag, t.offset);
  }

  NodePtr parse_if() {
    auto n = make(NodeKind::kIf, advance().offset);
    n->x = parse_tuple(false, false, {});
    n->body = parse_statements({"elif", "else", "endif"}, false);
    const Token& t = advance();
    if (t.text == "elif") {
      i_--;  // reparse "elif" as a nested if
      n->orelse.push_back(parse_if());
    } else if (t.text == "else") {
      n->orelse = parse_statements({"endif"}, true);
    }
    return n;
  }

  NodePtr parse_for() {
    auto n = make(NodeKind::kFor, advance().offset);
    n->x = parse_assign_target(false, {"in"});
    if (!skip_name("in")) syntax_error("expected token 'in', got '" + describe(cur()) + "'", cur().offset);
    n->y = parse_tuple(false, false, {"recursive"});
    if (skip_name("if")) n->z = parse_expression(true);
    if (is_name("recursive")) syntax_error("recursive for loops are not supported", cur().offset);
    ++loop_depth_;
    n->body = parse_statements({"endfor", "else"}, false);
    --loop_depth_;
    if (advance().text == "else") {
      int saved = loop_depth_;
      loop_depth_ = 0;
      n->orelse = parse_statements({"endfor"}, true);
      loop_depth_ = saved;
    }
    return n;
  }

  NodePtr parse_set() {
    auto n = make(NodeKind::kSet, advance().offset);
    n->x = parse_assign_target(true, {});
    if (skip_op("=")) {
      n->y = parse_tuple(false, true, {});
      return n;
    }
    n->kind = NodeKind::kSetBlock;
    if (is_op("|")) n->y = parse_filter(nullptr, false);
    n->body = parse_statements({"endset"}, true);
    return n;
  }

  void parse_signature(Node& n) {
    expect_op("(");
    bool have_default = false;
    while (!is_op(")")) {
      if (!n.strs.empty()) expect_op(",");
      n.strs.push_back(expect_name());
      if (skip_op("=")) {
        n.items.push_back(parse_expression(true));
        have_default = true;
      } else {
        if (have_default) syntax_error("non-default argument follows default argument", cur().offset);
        n.items.push_back(nullptr);
      }
    }
    expect_op(")");
  }

  NodePtr parse_macro() {
    auto n = make(NodeKind::kMacro, advance().offset);
    n->name = expect_name();
    parse_signature(*n);
    int saved = loop_depth_;
    loop_depth_ = 0;
    n->body = parse_statements({"endmacro"}, true);
    loop_depth_ = saved;
    return n;
  }

  NodePtr parse_call_block() {
    auto n = make(NodeKind::kCallBlock, advance().offset);
    if (is_op("(")) parse_signature(*n);
    n->x = parse_expression(true);
    if (n->x->kind != NodeKind::kCall) syntax_error("expected call", n->x->offset);
    int saved = loop_depth_;
    loop_depth_ = 0;
    n->body = parse_statements({"endcall"}, true);
    loop_depth_ = saved;
    return n;
  }

  NodePtr parse_filter_block() {
    auto n = make(NodeKind::kFilterBlock, advance().offset);
    n->y = parse_filter(nullptr, true);
    n->body = parse_statements({"endfilter"}, true);
    return n;
  }

  NodePtr parse_with() {
    auto n = make(NodeKind::kWith, advance().offset);
    while (cur().type != Tok::kBlockEnd) {
      if (!n->strs.empty()) expect_op(",");
      n->strs.push_back(expect_name());
      expect_op("=");
      n->items.push_back(parse_expression(true));
    }
    n->body = parse_statements({"endwith"}, true);
    return n;
  }

  // A name, a tuple of names, or (for set) namespace.attribute.
  NodePtr parse_assign_target(bool with_namespace, const std::vector<const char*>& extra_end) {
    if (with_namespace && cur().type == Tok::kName && look().type == Tok::kOp && look().text == ".") {
      uint32_t off = cur().offset;
      auto ns = make(NodeKind::kName, off);
      ns->name = advance().text;
      advance();
      auto n = make(NodeKind::kGetAttr, off);
      n->name = expect_name();
      n->x = std::move(ns);
      return n;
    }
    NodePtr target = parse_tuple(true, false, extra_end);
    auto check = [&](const Node& x) {
      if (x.kind != NodeKind::kName) syntax_error("can't assign to '" + std::string("expression") + "'", x.offset);
      if (x.name == "true" || x.name == "false" || x.name == "none" || x.name == "True" || x.name == "False" ||
          x.name == "None")
        syntax_error("can't assign to '" + x.name + "'", x.offset);
    };
    if (target->kind == NodeKind::kTuple)
      for (auto& x : target->items) check(*x);
    else
      check(*target);
    return target;
  }

  // ----- expressions -----

  bool tuple_end(const std::vector<const char*>& extra_end) const {
    const Token& t = cur();
    if (t.type == Tok::kVarEnd || t.type == Tok::kBlockEnd || t.type == Tok::kEof) return true;
    if (t.type == Tok::kOp && t.text == ")") return true;
    for (const char* e : extra_end)
      if (is_name(e)) return true;
    return false;
  }

  // Comma-separated expressions; more than one (or a trailing comma) makes a tuple.
  NodePtr parse_tuple(bool simplified, bool with_condexpr, const std::vector<const char*>& extra_end,
                      bool explicit_parens = false) {
    uint32_t off = cur().offset;
    std::vector<NodePtr> args;
    bool is_tuple = false;
    while (true) {
      if (!args.empty()) expect_op(",");
      if (tuple_end(extra_end)) break;
      if (simplified) {
        NodePtr p = parse_primary();
        args.push_back(p->kind == NodeKind::kName ? std::move(p) : std::move(p));
      } else {
        args.push_back(parse_expression(with_condexpr));
      }
      if (is_op(",")) is_tuple = true;
      else break;
    }
    if (!is_tuple) {
      if (!args.empty()) return std::move(args[0]);
      if (!explicit_parens) syntax_error("Expected an expression, got '" + describe(cur()) + "'", cur().offset);
    }
    auto n = make(NodeKind::kTuple, off);
    n->items = std::move(args);
    return n;
  }

  NodePtr parse_expression(bool with_condexpr) {
    DepthGuard guard(*this);
    return with_condexpr ? parse_condexpr() : parse_or();
  }

  NodePtr parse_condexpr() {
    NodePtr expr1 = parse_or();
    while (is_name("if")) {
      auto n = make(NodeKind::kCondExpr, advance().offset);
      n->y = parse_or();
      if (skip_name("else")) n->z = parse_condexpr();
      n->x = std::move(expr1);
      expr1 = std::move(n);
    }
    return expr1;
  }

  NodePtr binary(NodeKind kind, NodePtr l, NodePtr r, uint32_t off, std::string op = "") {
    auto n = make(kind, off);
    n->x = std::move(l);
    n->y = std::move(r);
    n->name = std::move(op);
    return n;
  }

  NodePtr parse_or() {
    NodePtr left = parse_and();
    while (is_name("or")) {
      uint32_t off = advance().offset;
      left = binary(NodeKind::kOr, std::move(left), parse_and(), off);
    }
    return left;
  }

  NodePtr parse_and() {
    NodePtr left = parse_not();
    while (is_name("and")) {
      uint32_t off = advance().offset;
      left = binary(NodeKind::kAnd, std::move(left), parse_not(), off);
    }
    return left;
  }

  NodePtr parse_not() {
    if (is_name("not")) {
      DepthGuard guard(*this);
      auto n = make(NodeKind::kNot, advance().offset);
      n->x = parse_not();
      return n;
    }
    return parse_compare();
  }

  NodePtr parse_compare() {
    uint32_t off = cur().offset;
    NodePtr expr = parse_math1();
    NodePtr cmp;
    while (true) {
      std::string op;
      if (cur().type == Tok::kOp && (cur().text == "==" || cur().text == "!=" || cur().text == "<" ||
                                     cur().text == "<=" || cur().text == ">" || cur().text == ">=")) {
        op = advance().text;
      } else if (is_name("in")) {
        advance();
        op = "in";
      } else if (is_name("not") && look().type == Tok::kName && look().text == "in") {
        advance();
        advance();
        op = "notin";
      } else {
        break;
      }
      if (!cmp) {
        cmp = make(NodeKind::kCompare, off);
        cmp->x = std::move(expr);
      }
      cmp->strs.push_back(op);
      cmp->items.push_back(parse_math1());
    }
    return cmp ? std::move(cmp) : std::move(expr);
  }

  NodePtr parse_math1() {
    NodePtr left = parse_concat();
    while (is_op("+") || is_op("-")) {
      const Token& t = advance();
      std::string op = t.text;
      left = binary(NodeKind::kBinary, std::move(left), parse_concat(), t.offset, op);
    }
    return left;
  }

  NodePtr parse_concat() {
    uint32_t off = cur().offset;
    NodePtr first = parse_math2();
    if (!is_op("~")) return first;
    auto n = make(NodeKind::kConcat, off);
    n->items.push_back(std::move(first));
    while (skip_op("~")) n->items.push_back(parse_math2());
    return n;
  }

  NodePtr parse_math2() {
    NodePtr left = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const Token& t = advance();
      std::string op = t.text;
      left = binary(NodeKind::kBinary, std::move(left), parse_pow(), t.offset, op);
    }
    return left;
  }

  NodePtr parse_pow() {
    NodePtr left = parse_unary(true);
    while (is_op("**")) {
      uint32_t off = advance().offset;
      left = binary(NodeKind::kBinary, std::move(left), parse_unary(true), off, "**");
    }
    return left;
  }

  NodePtr parse_unary(bool with_filter) {
    DepthGuard guard(*this);
    NodePtr node;
    if (is_op("-") || is_op("+")) {
      const Token& t = advance();
      node = make(t.text == "-" ? NodeKind::kNeg : NodeKind::kPos, t.offset);
      node->x = parse_unary(false);
    } else {
      node = parse_primary();
    }
    node = parse_postfix(std::move(node));
    if (with_filter) node = parse_filter_expr(std::move(node));
    return node;
  }

  NodePtr parse_primary() {
    DepthGuard guard(*this);
    const Token& t = cur();
    if (t.type == Tok::kName) {
      advance();
      if (t.text == "true" || t.text == "True" || t.text == "false" || t.text == "False") {
        auto n = make(NodeKind::kConst, t.offset);
        n->value = Value::boolean(t.text[0] == 't' || t.text[0] == 'T');
        return n;
      }
      if (t.text == "none" || t.text == "None") {
        auto n = make(NodeKind::kConst, t.offset);
        n->value = Value::none();
        return n;
      }
      auto n = make(NodeKind::kName, t.offset);
      n->name = t.text;
      return n;
    }
    if (t.type == Tok::kString) {
      auto n = make(NodeKind::kConst, t.offset);
      std::string s = advance().value.str();
      while (cur().type == Tok::kString) s += advance().value.str();
      n->value = Value::string(std::move(s));
      return n;
    }
    if (t.type == Tok::kInt || t.type == Tok::kFloat) {
      auto n = make(NodeKind::kConst, t.offset);
      n->value = advance().value;
      return n;
    }
    if (is_op("(")) {
      advance();
      NodePtr n = parse_tuple(false, true, {}, true);
      expect_op(")");
      return n;
    }
    if (is_op("[")) {
      auto n = make(NodeKind::kList, advance().offset);
      while (!is_op("]")) {
        if (!n->items.empty()) expect_op(",");
        if (is_op("]")) break;
        n->items.push_back(parse_expression(true));
      }
      expect_op("]");
      return n;
    }
    if (is_op("{")) {
      auto n = make(NodeKind::kDict, advance().offset);
      while (!is_op("}")) {
        if (!n->items.empty()) expect_op(",");
        if (is_op("}")) break;
        n->items.push_back(parse_expression(true));
        expect_op(":");
        n->items.push_back(parse_expression(true));
      }
      expect_op("}");
      return n;
    }
    fail_unexpected();
  }

  NodePtr parse_postfix(NodePtr node) {
    while (true) {
      if (is_op(".") || is_op("[")) node = parse_subscript(std::move(node));
      else if (is_op("(")) node = parse_call(std::move(node));
      else return node;
    }
  }

  NodePtr parse_filter_expr(NodePtr node) {
    while (true) {
      if (is_op("|")) node = parse_filter(std::move(node), false);
      else if (is_name("is")) node = parse_test(std::move(node));
      else if (is_op("(")) node = parse_call(std::move(node));
      else return node;
    }
  }

  NodePtr parse_subscript(NodePtr node) {
    DepthGuard guard(*this);
    const Token& t = advance();
    if (t.text == ".") {
      const Token& a = cur();
      if (a.type == Tok::kName) {
        auto n = make(NodeKind::kGetAttr, a.offset);
        n->name = advance().text;
        n->x = std::move(node);
        return n;
      }
      if (a.type == Tok::kInt) {
        auto n = make(NodeKind::kGetItem, a.offset);
        auto k = make(NodeKind::kConst, a.offset);
        k->value = advance().value;
        n->x = std::move(node);
        n->y = std::move(k);
        return n;
      }
      syntax_error("expected name or number", a.offset);
    }
    std::vector<NodePtr> args;
    while (!is_op("]")) {
      if (!args.empty()) expect_op(",");
      args.push_back(parse_subscribed());
    }
    expect_op("]");
    if (args.size() == 1 && args[0]->kind == NodeKind::kSlice) {
      args[0]->x = std::move(node);
      return std::move(args[0]);
    }
    for (const auto& a : args)
      if (a->kind == NodeKind::kSlice) syntax_error("slices inside a tuple subscript are not supported", a->offset);
    auto n = make(NodeKind::kGetItem, t.offset);
    n->x = std::move(node);
    if (args.size() == 1) {
      n->y = std::move(args[0]);
    } else {
      auto tup = make(NodeKind::kTuple, t.offset);
      tup->items = std::move(args);
      n->y = std::move(tup);
    }
    return n;
  }

  NodePtr parse_subscribed() {
    uint32_t off = cur().offset;
    std::vector<NodePtr> parts;
    if (skip_op(":")) {
      parts.push_back(nullptr);
    } else {
      NodePtr e = parse_expression(true);
      if (!skip_op(":")) return e;
      parts.push_back(std::move(e));
    }
    if (is_op(":")) parts.push_back(nullptr);
    else if (!is_op("]") && !is_op(",")) parts.push_back(parse_expression(true));
    else parts.push_back(nullptr);
    if (skip_op(":")) {
      if (!is_op("]") && !is_op(",")) parts.push_back(parse_expression(true));
      else parts.push_back(nullptr);
    } else {
      parts.push_back(nullptr);
    }
    auto n = make(NodeKind::kSlice, off);
    n->items = std::move(parts);
    return n;
  }

  void parse_call_args(Node& n) {
    expect_op("(");
    bool require_comma = false, have_kw = false, have_star = false, have_dstar = false;
    while (!is_op(")")) {
      if (require_comma) {
        expect_op(",");
        if (is_op(")")) break;
      }
      uint32_t off = cur().offset;
      auto bad = [&] { syntax_error("invalid syntax for function call expression", off); };
      if (skip_op("*")) {
        if (have_star || have_dstar) bad();
        auto a = make(NodeKind::kStarArgs, off);
        a->x = parse_expression(true);
        n.items.push_back(std::move(a));
        have_star = true;
      } else if (skip_op("**")) {
        if (have_dstar) bad();
        auto a = make(NodeKind::kStarKwargs, off);
        a->x = parse_expression(true);
        n.items.push_back(std::move(a));
        have_dstar = true;
      } else if (cur().type == Tok::kName && look().type == Tok::kOp && look().text == "=") {
        if (have_dstar) bad();
        auto a = make(NodeKind::kKwarg, off);
        a->name = advance().text;
        advance();
        a->x = parse_expression(true);
        n.items.push_back(std::move(a));
        have_kw = true;
      } else {
        if (have_star || have_dstar || have_kw) bad();
        n.items.push_back(parse_expression(true));
      }
      require_comma = true;
    }
    expect_op(")");
  }

  NodePtr parse_call(NodePtr node) {
    DepthGuard guard(*this);
    auto n = make(NodeKind::kCall, node->offset);
    n->x = std::move(node);
    parse_call_args(*n);
    return n;
  }

  std::string parse_dotted_name() {
    std::string name = expect_name();
    while (skip_op(".")) name += "." + expect_name();
    return name;
  }

  NodePtr parse_filter(NodePtr node, bool start_inline) {
    while (is_op("|") || start_inline) {
      if (!start_inline) advance();
      start_inline = false;
      auto n = make(NodeKind::kFilter, cur().offset);
      n->name = parse_dotted_name();
      n->flag = !is_known_filter(n->name);
      if (is_op("(")) parse_call_args(*n);
      n->x = std::move(node);
      node = std::move(n);
    }
    return node;
  }

  NodePtr parse_test(NodePtr node) {
    uint32_t off = advance().offset;
    bool negated = skip_name("not");
    auto n = make(NodeKind::kTest, cur().offset);
    n->name = parse_dotted_name();
    n->flag = !is_known_test(n->name);
    const Token& t = cur();
    if (is_op("(")) {
      parse_call_args(*n);
    } else if ((t.type == Tok::kName || t.type == Tok::kString || t.type == Tok::kInt || t.type == Tok::kFloat ||
                is_op("[") || is_op("{")) &&
               !is_name("else") && !is_name("or") && !is_name("and")) {
      if (is_name("is")) syntax_error("You cannot chain multiple tests with is", t.offset);
      n->items.push_back(parse_postfix(parse_primary()));
    }
    n->x = std::move(node);
    if (!negated) return n;
    auto neg = make(NodeKind::kNot, off);
    neg->x = std::move(n);
    return neg;
  }

  std::vector<Token> t_;
  size_t i_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
  std::vector<std::vector<const char*>> end_stack_;  // end tags the open blocks wait for
  std::vector<std::string> tag_stack_;               // tags being parsed
};

// jinja2 checks filter and test names at compile time, except inside if-statements and
// conditional expressions, where an unknown name fails only when evaluated.
void check_names(const Node* n, bool soft) {
  if (!n) return;
  if ((n->kind == NodeKind::kFilter || n->kind == NodeKind::kTest) && n->flag && !soft)
    syntax_error(std::string("No ") + (n->kind == NodeKind::kFilter ? "filter" : "test") + " named '" + n->name + "'.",
                 n->offset, "TemplateAssertionError");
  auto all = [](const std::vector<NodePtr>& v, bool s) {
    for (const auto& c : v) check_names(c.get(), s);
  };
  switch (n->kind) {
    case NodeKind::kIf:
      check_names(n->x.get(), true);
      all(n->body, true);
      all(n->orelse, true);
      return;
    case NodeKind::kCondExpr:
      check_names(n->x.get(), true);
      check_names(n->y.get(), true);
      check_names(n->z.get(), true);
      return;
    case NodeKind::kFor:
      check_names(n->y.get(), soft);
      check_names(n->z.get(), false);
      all(n->body, false);
      all(n->orelse, false);
      return;
    case NodeKind::kMacro:
    case NodeKind::kCallBlock:
    case NodeKind::kFilterBlock:
    case NodeKind::kSetBlock:
    case NodeKind::kWith:
      check_names(n->x.get(), n->kind == NodeKind::kCallBlock ? soft : false);
      check_names(n->y.get(), false);
      all(n->items, false);
      all(n->body, false);
      return;
    default:
      check_names(n->x.get(), soft);
      check_names(n->y.get(), soft);
      check_names(n->z.get(), soft);
      all(n->items, soft);
      all(n->body, soft);
      all(n->orelse, soft);
  }
}

}  // namespace

std::pair<int, int> Program::position(uint32_t offset) const {
  int line = 1, col = 1;
  for (size_t i = 0; i < offset && i < source.size(); ++i) {
    if (source[i] == '\n') line++, col = 1;
    else if ((static_cast<unsigned char>(source[i]) & 0xC0) != 0x80) col++;
  }
  return {line, col};
}

std::unique_ptr<Program> parse_program(std::string_view source, std::string name) {
  auto prog = std::make_unique<Program>();
  prog->name = std::move(name);
  if (!is_valid_utf8(source)) throw PositionedError(PyError("TemplateSyntaxError", "template is not valid UTF-8"), 0);
  // jinja2 normalises \r\n and \r to \n, and drops one trailing newline (keep_trailing_newline=False).
  std::string& s = prog->source;
  s.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      s += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      s += source[i];
    }
  }
  if (!s.empty() && s.back() == '\n') s.pop_back();
  Parser parser(Lexer(s).run());
  prog->body = parser.parse();
  for (const auto& n : prog->body) check_names(n.get(), false);
  return prog;
}

bool is_known_filter(std::string_view name) {
  static const char* kNames[] = {
      "abs", "attr", "batch", "capitalize", "center", "count", "d", "default", "dictsort", "e", "escape",
      "filesizeformat", "first", "float", "forceescape", "format", "groupby", "indent", "int", "items", "join",
      "last", "length", "list", "lower", "map", "max", "min", "pprint", "random", "reject", "rejectattr",
      "replace", "reverse", "round", "safe", "select", "selectattr", "slice", "sort", "string", "striptags",
      "sum", "title", "tojson", "trim", "truncate", "unique", "upper", "urlencode", "urlize", "wordcount",
      "wordwrap", "xmlattr"};
  for (const char* n : kNames)
    if (name == n) return true;
  return false;
}

bool is_known_test(std::string_view name) {
  static const char* kNames[] = {
      "odd", "even", "divisibleby", "defined", "undefined", "filter", "test", "none", "boolean", "false", "true",
      "integer", "float", "lower", "upper", "string", "mapping", "number", "sequence", "iterable", "callable",
      "sameas", "escaped", "in", "==", "eq", "equalto", "!=", "ne", ">", "gt", "greaterthan", "ge", ">=", "<",
      "lt", "lessthan", "<=", "le"};
  for (const char* n : kNames)
    if (name == n) return true;
  return false;
}

}  // namespace quanta::tokenizer::jinja
