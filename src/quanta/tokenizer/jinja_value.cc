#include "quanta/tokenizer/jinja_value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <unordered_map>

#include <utf8proc.h>

namespace quanta::tokenizer::jinja {

void throw_type_error(const std::string& message) { throw PyError("TypeError", message); }

namespace {
thread_local Budget* g_budget = nullptr;
}

BudgetScope::BudgetScope(Budget& b) : saved_(g_budget) { g_budget = &b; }
BudgetScope::~BudgetScope() { g_budget = saved_; }

void charge(int64_t steps) {
  if (!g_budget) return;
  g_budget->steps += steps;
  if (g_budget->steps > g_budget->max_steps)
    throw PyError("LimitError", "template took more than " + std::to_string(g_budget->max_steps) + " steps");
}

void charge_bytes(size_t n) { charge(static_cast<int64_t>(n / 64)); }

void check_bytes(size_t n) {
  if (g_budget && n > g_budget->max_bytes)
    throw PyError("LimitError", "string longer than " + std::to_string(g_budget->max_bytes) + " bytes");
}

void check_items(size_t n) {
  if (g_budget && n > g_budget->max_items)
    throw PyError("LimitError", "list or dict longer than " + std::to_string(g_budget->max_items) + " items");
}

namespace {
const std::string kEmpty;

[[noreturn]] void too_deep() {
  throw PyError("ValueError", "value nested more than " + std::to_string(kMaxNesting) + " levels deep");
}

int child_depth(const Value& v) { return v.depth(); }
}  // namespace

// ----- construction ------------------------------------------------------------------------------
// Containers record their nesting depth when built, so that a template cannot build a value so
// deep that printing, comparing or freeing it would exhaust the C++ stack.

Value Value::none() {
  Value v;
  v.kind_ = Kind::kNone;
  return v;
}
Value Value::boolean(bool b) {
  Value v;
  v.kind_ = Kind::kBool;
  v.b_ = b;
  return v;
}
Value Value::integer(int64_t i) {
  Value v;
  v.kind_ = Kind::kInt;
  v.i_ = i;
  return v;
}
Value Value::number(double f) {
  Value v;
  v.kind_ = Kind::kFloat;
  v.f_ = f;
  return v;
}
Value Value::string(std::string s, bool markup) {
  check_bytes(s.size());
  Value v;
  v.kind_ = Kind::kString;
  v.flag_ = markup;
  v.p_ = std::make_shared<std::string>(std::move(s));
  return v;
}
Value Value::list(std::vector<Value> items, Seq seq) {
  check_items(items.size());
  charge(static_cast<int64_t>(items.size()));  // also bounds the memory a render can allocate
  auto d = std::make_shared<ListData>();
  int depth = 0;
  for (const Value& x : items) depth = std::max(depth, child_depth(x));
  if (depth + 1 > kMaxNesting) too_deep();
  d->items = std::move(items);
  d->seq = seq;
  d->depth = depth + 1;
  Value v;
  v.kind_ = Kind::kList;
  v.p_ = std::move(d);
  return v;
}
Value Value::dict(std::vector<std::pair<Value, Value>> items) {
  check_items(items.size());
  charge(static_cast<int64_t>(items.size()));
  auto d = std::make_shared<DictData>();
  int depth = 0;
  d->items.reserve(items.size());
  std::unordered_map<std::string_view, size_t> by_name;  // string keys; others are searched
  for (auto& kv : items) {
    depth = std::max({depth, child_depth(kv.first), child_depth(kv.second)});
    size_t at = SIZE_MAX;
    if (kv.first.is_string()) {
      auto it = by_name.find(kv.first.str());
      if (it != by_name.end()) at = it->second;
    } else {
      for (size_t i = 0; i < d->items.size(); ++i)
        if (py_equal(d->items[i].first, kv.first)) at = i;
    }
    if (at != SIZE_MAX) {
      d->items[at].second = std::move(kv.second);
    } else {
      d->items.push_back(std::move(kv));
      if (d->items.back().first.is_string()) by_name.emplace(d->items.back().first.str(), d->items.size() - 1);
    }
  }
  if (depth + 1 > kMaxNesting) too_deep();
  d->depth = depth + 1;
  Value v;
  v.kind_ = Kind::kDict;
  v.p_ = std::move(d);
  return v;
}
Value Value::object(std::shared_ptr<Object> o) {
  Value v;
  v.kind_ = Kind::kObject;
  v.p_ = std::move(o);
  return v;
}
Value Value::undefined(std::string hint, bool unsafe) {
  Value v;
  v.flag_ = unsafe;
  v.p_ = std::make_shared<std::string>(std::move(hint));
  return v;
}

const std::string& Value::str() const {
  if (!p_) return kEmpty;
  return *static_cast<const std::string*>(p_.get());
}

int Value::depth() const {
  switch (kind_) {
    case Kind::kList: return list().depth;
    case Kind::kDict: return dict().depth;
    case Kind::kObject: return object().depth();
    default: return 0;
  }
}

const Value* DictData::find(const Value& key) const {
  for (const auto& kv : items)
    if (py_equal(kv.first, key)) return &kv.second;
  return nullptr;
}

Value Object::attr(const std::string& name) const {
  return Value::undefined("'" + type_name() + " object' has no attribute '" + name + "'");
}
Value Object::call(Interpreter&, Args&, std::vector<std::pair<std::string, Value>>&) {
  throw_type_error("'" + type_name() + "' object is not callable");
}

// ----- UTF-8 and Python str helpers ---------------------------------------------------------------

void utf8_append(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

namespace {
// Decodes one code point at s[i] (valid UTF-8 assumed), advancing i.
char32_t next_cp(std::string_view s, size_t& i) {
  unsigned char c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) return ++i, c;
  int n = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : 1;
  char32_t cp = c & (0x3F >> n);
  ++i;
  for (int k = 0; k < n && i < s.size(); ++k, ++i) cp = (cp << 6) | (static_cast<unsigned char>(s[i]) & 0x3F);
  return cp;
}
}  // namespace

std::u32string utf8_decode(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) out += next_cp(s, i);
  return out;
}

std::string utf8_encode(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) utf8_append(out, c);
  return out;
}

bool is_valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    int n;
    char32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3, cp = c & 0x07;
    } else {
      return false;
    }
    for (int k = 1; k <= n; ++k) {
      if (i + k >= s.size()) return false;
      unsigned char d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += n + 1;
  }
  return true;
}

size_t utf8_length(std::string_view s) {
  size_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

bool py_isspace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// Python's str.lower/upper use Unicode's case mappings; utf8proc has the simple ones, and
// str_lower/str_upper add the few one-to-many mappings chat text meets.
char32_t py_lower(char32_t c) {
  return c < 0x80 ? ((c >= 'A' && c <= 'Z') ? c + 32 : c) : static_cast<char32_t>(utf8proc_tolower(static_cast<int32_t>(c)));
}
char32_t py_upper(char32_t c) {
  return c < 0x80 ? ((c >= 'a' && c <= 'z') ? c - 32 : c) : static_cast<char32_t>(utf8proc_toupper(static_cast<int32_t>(c)));
}
char32_t py_title(char32_t c) {
  return c < 0x80 ? py_upper(c) : static_cast<char32_t>(utf8proc_totitle(static_cast<int32_t>(c)));
}

bool py_cased(char32_t c) { return py_lower(c) != c || py_upper(c) != c || py_title(c) != c; }

bool py_isalpha(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  auto cat = utf8proc_category(static_cast<int32_t>(c));
  return cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
}

bool py_isdigit(char32_t c) {
  if (c < 0x80) return c >= '0' && c <= '9';
  return utf8proc_category(static_cast<int32_t>(c)) == UTF8PROC_CATEGORY_ND;
}

bool py_isalnum(char32_t c) {
  if (c < 0x80 || py_isalpha(c)) return py_isalpha(c) || py_isdigit(c);
  auto cat = utf8proc_category(static_cast<int32_t>(c));
  return cat == UTF8PROC_CATEGORY_ND || cat == UTF8PROC_CATEGORY_NL || cat == UTF8PROC_CATEGORY_NO;
}

std::string str_lower(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    char32_t c = next_cp(s, i);
    if (c == 0x130) out += "i\xcc\x87";  // 'İ'.lower() == 'i̇'
    else utf8_append(out, py_lower(c));
  }
  return out;
}

std::string str_upper(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    char32_t c = next_cp(s, i);
    if (c == 0xDF) out += "SS";  // 'ß'.upper() == 'SS'
    else if (c >= 0xFB00 && c <= 0xFB06) out += (const char*[]){"FF", "FI", "FL", "FFI", "FFL", "ST", "ST"}[c - 0xFB00];
    else utf8_append(out, py_upper(c));
  }
  return out;
}

std::string str_strip(std::string_view s, const std::string* chars, bool left, bool right) {
  std::u32string set = chars ? utf8_decode(*chars) : std::u32string();
  auto strip_it = [&](char32_t c) { return chars ? set.find(c) != std::u32string::npos : py_isspace(c); };
  std::u32string u = utf8_decode(s);
  size_t b = 0, e = u.size();
  if (left)
    while (b < e && strip_it(u[b])) ++b;
  if (right)
    while (e > b && strip_it(u[e - 1])) --e;
  return utf8_encode(std::u32string_view(u).substr(b, e - b));
}

// Python's two split algorithms: with a separator, empty pieces are kept ("a,,b" -> 3 pieces);
// without one, runs of whitespace separate and the ends are trimmed, except that once maxsplit
// pieces are cut the remainder is kept as it is.
std::vector<std::string> str_split(std::string_view s, const std::string* sep, int64_t maxsplit, bool from_right) {
  std::vector<std::string> out;
  if (sep) {
    if (sep->empty()) throw PyError("ValueError", "empty separator");
    if (!from_right) {
      size_t pos = 0;
      while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
        size_t at = s.find(*sep, pos);
        if (at == std::string_view::npos) break;
        out.emplace_back(s.substr(pos, at - pos));
        pos = at + sep->size();
      }
      out.emplace_back(s.substr(pos));
    } else {
      size_t end = s.size();
      while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
        if (end < sep->size()) break;
        size_t at = s.rfind(*sep, end - sep->size());
        if (at == std::string_view::npos) break;
        out.emplace_back(s.substr(at + sep->size(), end - at - sep->size()));
        end = at;
      }
      out.emplace_back(s.substr(0, end));
      std::reverse(out.begin(), out.end());
    }
    return out;
  }
  // Whitespace splitting drops empty pieces; with maxsplit, the rest keeps its inner spaces.
  std::u32string u = utf8_decode(s);
  if (!from_right) {
    size_t i = 0;
    while (true) {
      while (i < u.size() && py_isspace(u[i])) ++i;
      if (i == u.size()) break;
      if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
        out.push_back(utf8_encode(std::u32string_view(u).substr(i)));  // the rest keeps its trailing spaces
        break;
      }
      size_t j = i;
      while (j < u.size() && !py_isspace(u[j])) ++j;
      out.push_back(utf8_encode(std::u32string_view(u).substr(i, j - i)));
      i = j;
    }
  } else {
    size_t e = u.size();
    while (true) {
      while (e > 0 && py_isspace(u[e - 1])) --e;
      if (e == 0) break;
      if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
        out.push_back(utf8_encode(std::u32string_view(u).substr(0, e)));  // the rest keeps its leading spaces
        break;
      }
      size_t j = e;
      while (j > 0 && !py_isspace(u[j - 1])) --j;
      out.push_back(utf8_encode(std::u32string_view(u).substr(j, e - j)));
      e = j;
    }
    std::reverse(out.begin(), out.end());
  }
  return out;
}

std::string str_replace(std::string_view s, std::string_view old, std::string_view with, int64_t count) {
  std::string out;
  if (old.empty()) {
    // Python inserts `with` before every code point and at the end.
    std::u32string u = utf8_decode(s);
    int64_t n = 0;
    for (char32_t c : u) {
      if (count < 0 || n < count) out += with, ++n;
      utf8_append(out, c);
      check_bytes(out.size());
    }
    if (count < 0 || n < count) out += with;
    return out;
  }
  size_t pos = 0;
  int64_t n = 0;
  while (count < 0 || n < count) {
    size_t at = s.find(old, pos);
    if (at == std::string_view::npos) break;
    check_bytes(out.size() + (at - pos) + with.size());
    out.append(s.substr(pos, at - pos));
    out.append(with);
    pos = at + old.size();
    ++n;
  }
  out.append(s.substr(pos));
  return out;
}

// markupsafe.escape's five replacements (quotes as numeric references, as markupsafe writes them).
std::string html_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

// ----- Python semantics ------------------------------------------------------------------------------

// Python's type names: they appear verbatim in the TypeError messages templates can raise.
std::string type_name(const Value& v) {
  switch (v.kind()) {
    case Kind::kUndefined: return "Undefined";
    case Kind::kNone: return "NoneType";
    case Kind::kBool: return "bool";
    case Kind::kInt: return "int";
    case Kind::kFloat: return "float";
    case Kind::kString: return v.is_markup() ? "Markup" : "str";
    case Kind::kList:
      switch (v.seq()) {
        case Seq::kList: return "list";
        case Seq::kTuple: return "tuple";
        case Seq::kGenerator: return "generator";
        case Seq::kDictItems: return "dict_items";
        case Seq::kDictKeys: return "dict_keys";
        case Seq::kDictValues: return "dict_values";
      }
      return "list";
    case Kind::kDict: return "dict";
    case Kind::kObject: return v.object().type_name();
  }
  return "object";
}

// Python truthiness. A generator is always true, even an empty one (jinja2's select, map and
// items filters return generators, and `{% if xs|select %}` is true for them).
bool truthy(const Value& v) {
  switch (v.kind()) {
    case Kind::kUndefined:
    case Kind::kNone: return false;
    case Kind::kBool: return v.as_bool();
    case Kind::kInt: return v.as_int() != 0;
    case Kind::kFloat: return v.as_float() != 0.0;
    case Kind::kString: return !v.str().empty();
    case Kind::kList: return v.seq() == Seq::kGenerator || !v.items().empty();
    case Kind::kDict: return !v.dict().items.empty();
    case Kind::kObject: return true;
  }
  return false;
}

std::string float_repr(double f) {
  if (std::isnan(f)) return "nan";
  if (std::isinf(f)) return f < 0 ? "-inf" : "inf";
  if (f == 0) return std::signbit(f) ? "-0.0" : "0.0";
  // Shortest round-trip digits (what repr() prints since Python 3.1), then Python's layout:
  // positional for exponents -4..15 with at least one digit after the point, else d.ddde+XX.
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, f, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  size_t e_pos = sci.find('e');
  int exp = std::stoi(sci.substr(e_pos + 1));
  std::string mant = sci.substr(0, e_pos);
  bool neg = mant[0] == '-';
  if (neg) mant.erase(0, 1);
  std::string digits;
  for (char c : mant)
    if (c != '.') digits += c;
  std::string out = neg ? "-" : "";
  int decpt = exp + 1;  // position of the decimal point relative to the digits
  if (exp >= -4 && exp < 16) {
    if (decpt <= 0) {
      out += "0." + std::string(-decpt, '0') + digits;
    } else if (decpt >= static_cast<int>(digits.size())) {
      out += digits + std::string(decpt - digits.size(), '0') + ".0";
    } else {
      out += digits.substr(0, decpt) + "." + digits.substr(decpt);
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1) out += "." + digits.substr(1);
  char eb[16];
  std::snprintf(eb, sizeof eb, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
  return out + eb;
}

namespace {
// Python's str.isprintable: not a control, format, surrogate, private-use, unassigned or
// separator character (the ASCII space excepted).
bool repr_printable(char32_t c) {
  if (c < 0x7F) return c >= 0x20;
  switch (utf8proc_category(static_cast<int32_t>(c))) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CN:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
    case UTF8PROC_CATEGORY_ZS: return false;
    default: return true;
  }
}

// repr(str): single quotes unless the text has a single quote and no double quote; backslash
// escapes for quotes, \n \r \t and non-printable characters; printable non-ASCII kept as is.
std::string repr_string(const std::string& s) {
  bool has_single = s.find('\'') != std::string::npos, has_double = s.find('"') != std::string::npos;
  char q = (has_single && !has_double) ? '"' : '\'';
  std::string out(1, q);
  for (size_t i = 0; i < s.size();) {
    char32_t c = next_cp(s, i);
    if (c == static_cast<char32_t>(q) || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (repr_printable(c)) {
      utf8_append(out, c);
    } else {
      char buf[16];
      if (c < 0x100) std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(c));
      else if (c < 0x10000) std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
      else std::snprintf(buf, sizeof buf, "\\U%08x", static_cast<unsigned>(c));
      out += buf;
    }
  }
  out += q;
  return out;
}

void repr_into(std::string& out, const Value& v);

void repr_seq(std::string& out, const std::vector<Value>& items, const char* open, const char* close, bool tuple) {
  out += open;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += ", ";
    repr_into(out, items[i]);
  }
  if (tuple && items.size() == 1) out += ",";
  out += close;
}

void repr_into(std::string& out, const Value& v) {
  charge(1);
  check_bytes(out.size());
  switch (v.kind()) {
    case Kind::kString:
      charge(static_cast<int64_t>(v.str().size() / 8));  // escaping walks code points: dearer than a copy
      out += v.is_markup() ? "Markup(" + repr_string(v.str()) + ")" : repr_string(v.str());
      return;
    case Kind::kList:
      switch (v.seq()) {
        case Seq::kList: repr_seq(out, v.items(), "[", "]", false); return;
        case Seq::kTuple: repr_seq(out, v.items(), "(", ")", true); return;
        case Seq::kGenerator: out += "<generator object>"; return;
        default: out += type_name(v); repr_seq(out, v.items(), "([", "])", false); return;
      }
    case Kind::kDict: {
      out += "{";
      bool first = true;
      for (const auto& [k, x] : v.dict().items) {
        if (!first) out += ", ";
        first = false;
        repr_into(out, k);
        out += ": ";
        repr_into(out, x);
      }
      out += "}";
      return;
    }
    case Kind::kObject: out += v.object().repr(); return;
    case Kind::kUndefined: out += "Undefined"; return;
    default: out += py_str(v); return;
  }
}
}  // namespace

std::string py_str(const Value& v) {
  switch (v.kind()) {
    case Kind::kUndefined: return "";
    case Kind::kNone: return "None";
    case Kind::kBool: return v.as_bool() ? "True" : "False";
    case Kind::kInt: return std::to_string(v.as_int());
    case Kind::kFloat: return float_repr(v.as_float());
    case Kind::kString: return v.str();
    default: return py_repr(v);
  }
}

std::string py_repr(const Value& v) {
  std::string out;
  repr_into(out, v);
  return out;
}

// Python ==: numbers compare across int, float and bool (1 == 1.0 == True), a list never equals
// a tuple, dicts compare without order, and other objects by identity.
bool py_equal(const Value& a, const Value& b) {
  charge(1);
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_float() == b.as_float();
    return a.as_int() == b.as_int();
  }
  if (a.kind() != b.kind()) return false;
  if ((a.is_list() || a.is_dict()) && a.identity() == b.identity()) return true;  // as CPython's identity shortcut
  switch (a.kind()) {
    case Kind::kUndefined:
    case Kind::kNone: return true;
    case Kind::kString:
      if (a.str().size() != b.str().size()) return false;
      charge_bytes(a.str().size());
      return a.str() == b.str();
    case Kind::kList: {
      auto family = [](Seq s) { return s == Seq::kDictItems || s == Seq::kDictKeys ? Seq::kDictKeys : s; };
      if (a.seq() == Seq::kGenerator || b.seq() == Seq::kGenerator || a.seq() == Seq::kDictValues)
        return a.identity() == b.identity();
      if (family(a.seq()) != family(b.seq()) || a.items().size() != b.items().size()) return false;
      if (family(a.seq()) == Seq::kDictKeys) {  // set-like views compare without order
        for (const Value& x : a.items())
          if (!py_contains(b, x)) return false;
        return true;
      }
      for (size_t i = 0; i < a.items().size(); ++i)
        if (!py_equal(a.items()[i], b.items()[i])) return false;
      return true;
    }
    case Kind::kDict: {
      const auto& x = a.dict().items;
      if (x.size() != b.dict().items.size()) return false;
      for (const auto& [k, val] : x) {
        const Value* other = b.dict().find(k);
        if (!other || !py_equal(val, *other)) return false;
      }
      return true;
    }
    default: return a.identity() == b.identity();
  }
}

// Python <, the only comparison sorted(), min() and dictsort use. Undefined raises, as jinja2's
// Undefined does for every ordering operator.
bool py_less(const Value& a, const Value& b) { return py_compare("<", a, b); }

// Python's ordering: numbers across int/float/bool, strings by code point (which UTF-8 byte
// order is), lists and tuples element by element: the first unequal pair decides with the same
// operator (so a TypeError names that pair's types), else the lengths.
bool py_compare(const std::string& op, const Value& a, const Value& b) {
  charge(1);
  if (op == "==") return py_equal(a, b);
  if (op == "!=") return !py_equal(a, b);
  if (a.is_undefined()) raise_undefined(a);
  if (b.is_undefined()) raise_undefined(b);
  auto order = [&op](auto x, auto y) {
    if (op == "<") return x < y;
    if (op == ">") return x > y;
    if (op == "<=") return x <= y;
    return x >= y;
  };
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return order(a.as_float(), b.as_float());
    return order(a.as_int(), b.as_int());
  }
  if (a.is_string() && b.is_string()) {
    charge_bytes(std::min(a.str().size(), b.str().size()));
    return order(a.str(), b.str());
  }
  if (a.is_list() && b.is_list() && a.seq() == b.seq() && (a.seq() == Seq::kList || a.seq() == Seq::kTuple)) {
    const auto &x = a.items(), &y = b.items();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i)
      if (!py_equal(x[i], y[i])) return py_compare(op, x[i], y[i]);
    return order(x.size(), y.size());
  }
  throw_type_error("'" + op + "' not supported between instances of '" + type_name(a) + "' and '" + type_name(b) + "'");
}

int64_t py_len(const Value& v) {
  switch (v.kind()) {
    case Kind::kUndefined: return 0;
    case Kind::kString: return static_cast<int64_t>(utf8_length(v.str()));
    case Kind::kList:
      if (v.seq() != Seq::kGenerator) return static_cast<int64_t>(v.items().size());
      break;
    case Kind::kDict: return static_cast<int64_t>(v.dict().items.size());
    default: break;
  }
  throw_type_error("object of type '" + type_name(v) + "' has no len()");
}

std::vector<Value> iterate(const Value& v) {
  if (v.is_list()) charge(static_cast<int64_t>(v.items().size() / 8));
  switch (v.kind()) {
    case Kind::kUndefined: return {};
    case Kind::kList: return v.items();
    case Kind::kDict: {
      std::vector<Value> keys;
      keys.reserve(v.dict().items.size());
      for (const auto& kv : v.dict().items) keys.push_back(kv.first);
      return keys;
    }
    case Kind::kString: {
      std::vector<Value> chars;
      const std::string& s = v.str();
      for (size_t i = 0; i < s.size();) {
        size_t start = i;
        next_cp(s, i);
        chars.push_back(Value::string(s.substr(start, i - start)));  // Markup's characters are plain str
      }
      return chars;
    }
    default: throw_type_error("'" + type_name(v) + "' object is not iterable");
  }
}

// `item in container`: substring for strings, key for dicts, element for lists; Undefined is an
// empty iterable (no error), None and numbers raise.
bool py_contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Kind::kUndefined: return false;
    case Kind::kString:
      if (!item.is_string())
        throw_type_error("'in <string>' requires string as left operand, not " + type_name(item));
      // std::string::find is O(haystack * needle) at worst.
      charge(static_cast<int64_t>(container.str().size() / 64 + 1) * static_cast<int64_t>(item.str().size() / 64 + 1));
      return container.str().find(item.str()) != std::string::npos;
    case Kind::kList:
      for (const Value& x : container.items())
        if (py_equal(x, item)) return true;
      return false;
    case Kind::kDict:
      require_hashable(item);
      return container.dict().find(item) != nullptr;
    default: throw_type_error("argument of type '" + type_name(container) + "' is not iterable");
  }
}

void require_hashable(const Value& v) {
  if (v.is_dict() || (v.is_list() && v.seq() != Seq::kTuple && v.seq() != Seq::kGenerator))
    throw_type_error("unhashable type: '" + type_name(v) + "'");
  if (v.is_list() && v.seq() == Seq::kTuple)
    for (const Value& x : v.items()) require_hashable(x);
}

namespace {
// One conversion of printf-style formatting, with its flags, width and precision.
std::string format_one(char type, const std::string& flags, int width, int precision, const Value& v) {
  std::string body;
  bool numeric = std::strchr("diuxXoeEfFgGc", type) != nullptr;
  if (v.is_undefined() && numeric) raise_undefined(v);
  if (type == 's' || type == 'r' || type == 'a') {
    body = type == 's' ? py_str(v) : py_repr(v);
    if (precision >= 0) {
      std::u32string u = utf8_decode(body);
      if (static_cast<int>(u.size()) > precision) body = utf8_encode(std::u32string_view(u).substr(0, precision));
    }
  } else if (type == 'c') {
    if (v.is_string() && utf8_length(v.str()) == 1) body = v.str();
    else if (v.is_int() && v.as_int() >= 0 && v.as_int() <= 0x10FFFF) utf8_append(body, static_cast<char32_t>(v.as_int()));
    else throw_type_error("%c requires int or char");
  } else {
    if (!v.is_number())
      throw_type_error(std::string("%") + type + " format: " +
                       (std::strchr("xXo", type) ? "an integer is required, not " : "a real number is required, not ") +
                       type_name(v));
    if (std::strchr("xXo", type) && v.is_float())
      throw_type_error(std::string("%") + type + " format: an integer is required, not float");
    std::string spec = "%" + flags;
    if (precision >= 0) spec += "." + std::to_string(precision);
    char buf[512];
    if (std::strchr("diu", type)) {
      double f = v.as_float();
      if (v.is_float() && !std::isfinite(f)) throw PyError("OverflowError", "cannot convert float infinity to integer");
      long long i = v.is_float() ? static_cast<long long>(f) : v.as_int();
      std::snprintf(buf, sizeof buf, (spec + "lld").c_str(), i);
    } else if (std::strchr("xXo", type)) {
      long long i = v.as_int();
      std::string s = (spec + "ll" + type);
      std::snprintf(buf, sizeof buf, s.c_str(), i < 0 ? -i : i);
      body = buf;
      if (i < 0) body.insert(body.find_first_not_of(" "), "-");
      buf[0] = 0;
    } else {
      if (precision > 100) throw PyError("LimitError", "format precision too large");
      std::snprintf(buf, sizeof buf, (spec + type).c_str(), v.as_float());
    }
    if (buf[0]) body = buf;
  }
  int len = static_cast<int>(utf8_length(body));
  if (width > len) {
    if (width > (1 << 20)) throw PyError("LimitError", "format width too large");
    bool left = flags.find('-') != std::string::npos;
    bool zero = numeric && !left && flags.find('0') != std::string::npos;
    std::string pad(width - len, zero ? '0' : ' ');
    if (zero) {
      size_t sign = (!body.empty() && (body[0] == '-' || body[0] == '+' || body[0] == ' ')) ? 1 : 0;
      body.insert(sign, pad);
    } else {
      body = left ? body + pad : pad + body;
    }
  }
  return body;
}
}  // namespace

std::string printf_format(const std::string& f, const Value& args) {
  bool tuple = args.is_list() && args.seq() == Seq::kTuple;
  const std::vector<Value> one{args};
  const std::vector<Value>& pos = tuple ? args.items() : one;
  size_t next = 0;
  bool used_mapping = false;
  std::string out;
  auto take = [&]() -> const Value& {
    if (next >= pos.size()) throw_type_error("not enough arguments for format string");
    return pos[next++];
  };
  for (size_t i = 0; i < f.size(); ++i) {
    if (f[i] != '%') {
      out += f[i];
      continue;
    }
    if (++i >= f.size()) throw PyError("ValueError", "incomplete format");
    const Value* mapped = nullptr;
    if (f[i] == '(') {
      size_t close = f.find(')', i);
      if (close == std::string::npos) throw PyError("ValueError", "incomplete format key");
      if (!args.is_dict()) throw_type_error("format requires a mapping");
      mapped = args.dict().find(Value::string(f.substr(i + 1, close - i - 1)));
      if (!mapped) throw PyError("KeyError", py_repr(Value::string(f.substr(i + 1, close - i - 1))));
      used_mapping = true;
      i = close + 1;
    }
    std::string flags;
    while (i < f.size() && std::strchr("-+ #0", f[i])) flags += f[i++];
    int width = -1, precision = -1;
    auto number = [&](int& into) {
      if (i < f.size() && f[i] == '*') {
        into = static_cast<int>(take().as_int()), ++i;
        return;
      }
      while (i < f.size() && f[i] >= '0' && f[i] <= '9') into = (into < 0 ? 0 : into) * 10 + (f[i++] - '0');
      if (into > (1 << 20)) throw PyError("LimitError", "format width too large");
    };
    number(width);
    if (i < f.size() && f[i] == '.') {
      ++i;
      precision = 0;
      number(precision);
    }
    while (i < f.size() && std::strchr("hlL", f[i])) ++i;
    if (i >= f.size()) throw PyError("ValueError", "incomplete format");
    char type = f[i];
    if (type == '%') {
      out += '%';
      continue;
    }
    if (!std::strchr("sradiuxXoeEfFgGc", type)) {
      char buf[96];
      std::snprintf(buf, sizeof buf, "unsupported format character '%c' (0x%x) at index %zu", type,
                    static_cast<unsigned char>(type), i);
      throw PyError("ValueError", buf);
    }
    out += format_one(type, flags, width, precision, mapped ? *mapped : take());
    check_bytes(out.size());
  }
  // Python: leftover arguments are an error, unless the argument is subscriptable (a dict or a
  // list counts as a mapping there, PyMapping_Check).
  bool mapping_like = args.is_dict() || args.is_undefined() || (args.is_list() && args.seq() == Seq::kList);
  if (next < pos.size() && !used_mapping && !mapping_like)
    throw_type_error("not all arguments converted during string formatting");
  return out;
}

void raise_undefined(const Value& v) {
  throw PyError(v.is_unsafe_undefined() ? "SecurityError" : "UndefinedError", v.str().empty() ? "undefined value" : v.str());
}

// ----- JSON ----------------------------------------------------------------------------------------------

namespace {
// json.dumps string escaping: \" \\ \n \r \t \b \f, other controls as \u00XX; with
// ensure_ascii, everything outside printable ASCII as \uXXXX (astral planes as surrogate pairs).
void json_string(std::string& out, const std::string& s, bool ensure_ascii) {
  out += '"';
  char buf[16];
  for (size_t i = 0; i < s.size();) {
    char32_t c = next_cp(s, i);
    switch (c) {
      case '"': out += "\\\""; continue;
      case '\\': out += "\\\\"; continue;
      case '\n': out += "\\n"; continue;
      case '\r': out += "\\r"; continue;
      case '\t': out += "\\t"; continue;
      case '\b': out += "\\b"; continue;
      case '\f': out += "\\f"; continue;
      default: break;
    }
    if (c < 0x20 || (ensure_ascii && c >= 0x7F)) {
      if (c >= 0x10000) {
        char32_t v = c - 0x10000;
        std::snprintf(buf, sizeof buf, "\\u%04x\\u%04x", static_cast<unsigned>(0xD800 | (v >> 10)),
                      static_cast<unsigned>(0xDC00 | (v & 0x3FF)));
      } else {
        std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
      }
      out += buf;
    } else {
      utf8_append(out, c);
    }
  }
  out += '"';
}

std::string json_float(double f) {
  if (std::isnan(f)) return "NaN";
  if (std::isinf(f)) return f < 0 ? "-Infinity" : "Infinity";
  return float_repr(f);
}

// json.dumps layout: with an indent, every element and key goes on its own line and empty
// containers stay "[]" / "{}"; dict keys may be str, int, float, bool or None (written as
// strings); tuples are arrays; anything else is "not JSON serializable".
void json_into(std::string& out, const Value& v, const JsonOptions& o, int level) {
  charge(1);
  check_bytes(out.size());
  auto newline = [&](int lvl) {
    out += '\n';
    for (int i = 0; i < lvl; ++i) out += o.indent;
  };
  switch (v.kind()) {
    case Kind::kNone: out += "null"; return;
    case Kind::kBool: out += v.as_bool() ? "true" : "false"; return;
    case Kind::kInt: out += std::to_string(v.as_int()); return;
    case Kind::kFloat: out += json_float(v.as_float()); return;
    case Kind::kString:
      charge(static_cast<int64_t>(v.str().size() / 8));  // as repr_into
      json_string(out, v.str(), o.ensure_ascii);
      return;
    case Kind::kList: {
      if (v.seq() != Seq::kList && v.seq() != Seq::kTuple) break;
      if (v.items().empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (size_t i = 0; i < v.items().size(); ++i) {
        if (i) out += o.item_sep;
        if (o.has_indent) newline(level + 1);
        json_into(out, v.items()[i], o, level + 1);
      }
      if (o.has_indent) newline(level);
      out += ']';
      return;
    }
    case Kind::kDict: {
      if (v.dict().items.empty()) {
        out += "{}";
        return;
      }
      std::vector<const std::pair<Value, Value>*> items;
      for (const auto& kv : v.dict().items) items.push_back(&kv);
      if (o.sort_keys)
        std::stable_sort(items.begin(), items.end(),
                         [](const auto* a, const auto* b) { return py_less(a->first, b->first); });
      out += '{';
      bool first = true;
      for (const auto* kv : items) {
        if (!first) out += o.item_sep;
        first = false;
        if (o.has_indent) newline(level + 1);
        const Value& k = kv->first;
        if (k.is_string()) json_string(out, k.str(), o.ensure_ascii);
        else if (k.is_bool() || k.is_int() || k.is_none()) out += '"' + (k.is_none() ? std::string("null") : k.is_bool() ? (k.as_bool() ? "true" : "false") : std::to_string(k.as_int())) + '"';
        else if (k.is_float()) out += '"' + json_float(k.as_float()) + '"';
        else throw_type_error("keys must be str, int, float, bool or None, not " + type_name(k));
        out += o.key_sep;
        json_into(out, kv->second, o, level + 1);
      }
      if (o.has_indent) newline(level);
      out += '}';
      return;
    }
    default: break;
  }
  std::string tn = type_name(v);
  throw_type_error("Object of type " + tn + " is not JSON serializable");
}
}  // namespace

std::string to_json(const Value& v, const JsonOptions& opt) {
  std::string out;
  json_into(out, v, opt, 0);
  return out;
}

namespace {
// `level` counts the arrays and objects from the root to j; refused before recursing, so a deep
// value costs no stack (JSON text is capped at the same depth, core/json.h).
Value from_json_at(const nlohmann::ordered_json& j, int level) {
  using J = nlohmann::ordered_json;
  if ((j.is_array() || j.is_object()) && level > kMaxNesting) too_deep();
  switch (j.type()) {
    case J::value_t::null: return Value::none();
    case J::value_t::boolean: return Value::boolean(j.get<bool>());
    case J::value_t::number_integer: return Value::integer(j.get<int64_t>());
    case J::value_t::number_unsigned: {
      uint64_t u = j.get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) throw PyError("ValueError", "integer too large: " + std::to_string(u));
      return Value::integer(static_cast<int64_t>(u));
    }
    case J::value_t::number_float: return Value::number(j.get<double>());
    case J::value_t::string: return Value::string(j.get<std::string>());
    case J::value_t::array: {
      std::vector<Value> items;
      items.reserve(j.size());
      for (const auto& x : j) items.push_back(from_json_at(x, level + 1));
      return Value::list(std::move(items));
    }
    case J::value_t::object: {
      // JSON object keys are unique, so this skips Value::dict's duplicate check.
      std::vector<std::pair<Value, Value>> items;
      items.reserve(j.size());
      for (auto it = j.begin(); it != j.end(); ++it) items.emplace_back(Value::string(it.key()), from_json_at(it.value(), level + 1));
      Value v = Value::dict({});
      auto& d = const_cast<DictData&>(v.dict());
      int depth = 0;
      for (auto& kv : items) depth = std::max(depth, kv.second.depth());
      if (depth + 1 > kMaxNesting) too_deep();
      d.depth = depth + 1;
      d.items = std::move(items);
      return v;
    }
    default: throw PyError("ValueError", "unsupported JSON value");
  }
}
}  // namespace

Value from_json(const nlohmann::ordered_json& j) { return from_json_at(j, 1); }

}  // namespace quanta::tokenizer::jinja
