// Filters, tests, globals and Python methods of the chat-template interpreter. Each follows
// jinja2 3.1.6 (filters.py, tests.py, sandbox.py) and transformers' additions (tojson,
// raise_exception, strftime_now, dict, namespace); the comments name what is Python-specific.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>

#include "quanta/tokenizer/jinja_interp.h"

namespace quanta::tokenizer::jinja {

namespace {

[[noreturn]] void unsupported(const std::string& what) {
  throw PyError("UnsupportedError", what + " is not supported by quanta's chat-template engine");
}

// Python-style binding of positional and keyword arguments to named parameters.
// Python-style binding of positional and keyword arguments to named parameters, so filters and
// methods accept both `tojson(indent=2)` and `tojson(false, 2)` as jinja2's do.
class Params {
 public:
  Params(const std::string& func, std::initializer_list<const char*> names, const Args& pos, const Kwargs& kw)
      : names_(names.begin(), names.end()), values_(names_.size()) {
    if (pos.size() > names_.size())
      throw_type_error(func + "() takes at most " + std::to_string(names_.size()) + " argument(s) (" +
                       std::to_string(pos.size()) + " given)");
    for (size_t i = 0; i < pos.size(); ++i) values_[i] = pos[i], given_.push_back(i);
    for (const auto& [k, v] : kw) {
      auto it = std::find(names_.begin(), names_.end(), k);
      if (it == names_.end()) throw_type_error(func + "() got an unexpected keyword argument '" + k + "'");
      size_t i = it - names_.begin();
      if (std::find(given_.begin(), given_.end(), i) != given_.end())
        throw_type_error(func + "() got multiple values for argument '" + k + "'");
      values_[i] = v;
      given_.push_back(i);
    }
  }
  bool has(size_t i) const { return std::find(given_.begin(), given_.end(), i) != given_.end(); }
  Value get(size_t i, Value def) const { return has(i) ? values_[i] : def; }
  const Value& at(size_t i) const { return values_[i]; }

 private:
  std::vector<std::string> names_;
  std::vector<Value> values_;
  std::vector<size_t> given_;
};

int64_t to_int(const Value& v, const char* what) {
  if (v.is_undefined()) raise_undefined(v);
  if (v.is_int() || v.is_bool()) return v.as_int();
  throw_type_error(std::string("'") + type_name(v) + "' object cannot be interpreted as an integer (" + what + ")");
}

Value generator(std::vector<Value> items) { return Value::list(std::move(items), Seq::kGenerator); }

// A merge sort: stable like Python's, and safe with comparisons that are not a strict order.
void stable_sort(std::vector<Value>& v, const std::function<bool(const Value&, const Value&)>& less) {
  std::vector<Value> tmp(v.size());
  for (size_t width = 1; width < v.size(); width *= 2) {
    for (size_t lo = 0; lo < v.size(); lo += 2 * width) {
      size_t mid = std::min(lo + width, v.size()), hi = std::min(lo + 2 * width, v.size());
      size_t i = lo, j = mid, k = lo;
      while (i < mid && j < hi) tmp[k++] = less(v[j], v[i]) ? v[j++] : v[i++];
      while (i < mid) tmp[k++] = v[i++];
      while (j < hi) tmp[k++] = v[j++];
    }
    v.swap(tmp);
  }
}

Value ignore_case(const Value& v) { return v.is_string() ? Value::string(str_lower(v.str())) : v; }

// jinja2's make_attrgetter: "a.b.0" looks up a, then b, then item 0, each with getitem.
std::vector<Value> attribute_parts(const Value& attribute) {
  std::vector<Value> parts;
  if (attribute.is_none() || attribute.is_undefined()) return parts;
  if (!attribute.is_string()) return {attribute};
  const std::string dot(".");
  for (const std::string& p : str_split(attribute.str(), &dot, -1, false)) {
    bool digits = !p.empty() && std::all_of(p.begin(), p.end(), [](char c) { return c >= '0' && c <= '9'; });
    parts.push_back(digits && p.size() < 18 ? Value::integer(std::stoll(p)) : Value::string(p));
  }
  return parts;
}

Value lookup_path(Interpreter& in, Value item, const std::vector<Value>& parts, const Value* def = nullptr) {
  for (const Value& p : parts) {
    item = in.getitem(item, p);
    if (def && item.is_undefined()) item = *def;
  }
  return item;
}

// Sort keys for sort/min/max/unique: one attribute path, or several separated by commas.
std::function<Value(const Value&)> key_func(Interpreter& in, const Value& attribute, bool case_sensitive, bool multi) {
  std::vector<std::vector<Value>> paths;
  if (multi && attribute.is_string()) {
    std::string comma(",");
    for (const std::string& a : str_split(attribute.str(), &comma, -1, false)) paths.push_back(attribute_parts(Value::string(a)));
  } else {
    paths.push_back(attribute_parts(attribute));
  }
  return [&in, paths, case_sensitive, multi](const Value& item) {
    std::vector<Value> keys;
    for (const auto& p : paths) {
      Value k = lookup_path(in, item, p);
      keys.push_back(case_sensitive ? k : ignore_case(k));
    }
    // sort's key is always a list (jinja2's make_multi_attrgetter), so equal keys compare
    // without calling < on their items.
    return multi ? Value::list(std::move(keys)) : keys[0];
  };
}

std::u32string splitlines_keep(const std::u32string& s, std::vector<std::u32string>& lines) {
  auto is_break = [](char32_t c) {
    return c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D || c == 0x1E || c == 0x85 ||
           c == 0x2028 || c == 0x2029;
  };
  size_t start = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (!is_break(s[i])) continue;
    lines.push_back(s.substr(start, i - start));
    if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') ++i;
    start = i + 1;
  }
  if (start < s.size()) lines.push_back(s.substr(start));
  return {};
}

std::vector<std::string> splitlines(const std::string& s) {
  std::vector<std::u32string> lines;
  splitlines_keep(utf8_decode(s), lines);
  std::vector<std::string> out;
  for (auto& l : lines) out.push_back(utf8_encode(l));
  return out;
}

// Python's str -> int and str -> float conversions (whitespace, sign, underscores).
bool parse_py_int(const std::string& text, int base, int64_t& out) {
  std::string s = str_strip(text, nullptr, true, true);
  size_t i = 0;
  bool neg = false;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
  if (base == 16 && s.compare(i, 2, "0x") == 0) i += 2;
  if (base == 8 && s.compare(i, 2, "0o") == 0) i += 2;
  if (base == 2 && s.compare(i, 2, "0b") == 0) i += 2;
  if (i >= s.size()) return false;
  uint64_t v = 0;
  bool prev_digit = false;
  for (; i < s.size(); ++i) {
    char c = s[i];
    if (c == '_' && prev_digit && i + 1 < s.size() && s[i + 1] != '_') {
      prev_digit = false;
      continue;
    }
    int d = (c >= '0' && c <= '9') ? c - '0' : ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') ? (c | 0x20) - 'a' + 10 : 99;
    if (d >= base) return false;
    if (v > (static_cast<uint64_t>(INT64_MAX) - d) / base) throw PyError("OverflowError", "int too large");
    v = v * base + d;
    prev_digit = true;
  }
  if (!prev_digit) return false;
  out = neg ? -static_cast<int64_t>(v) : static_cast<int64_t>(v);
  return true;
}

bool parse_py_float(const std::string& text, double& out) {
  std::string s = str_strip(text, nullptr, true, true);
  std::string clean;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '_') {
      bool ok = i > 0 && i + 1 < s.size() && isdigit(static_cast<unsigned char>(s[i - 1])) &&
                isdigit(static_cast<unsigned char>(s[i + 1]));
      if (!ok) return false;
      continue;
    }
    clean += s[i];
  }
  std::string lower = str_lower(clean);
  std::string body = (!lower.empty() && (lower[0] == '+' || lower[0] == '-')) ? lower.substr(1) : lower;
  bool neg = !lower.empty() && lower[0] == '-';
  if (body == "inf" || body == "infinity") return out = neg ? -INFINITY : INFINITY, true;
  if (body == "nan") return out = NAN, true;
  if (body.empty() || body.find_first_not_of("0123456789.e+-") != std::string::npos) return false;
  char* end = nullptr;
  out = std::strtod(clean.c_str(), &end);
  return end && *end == 0 && !clean.empty();
}

// str.title: the first cased character after an uncased one is titlecased, the rest lowered.
std::string str_title(const std::string& s) {
  std::u32string u = utf8_decode(s), out;
  bool prev_cased = false;
  for (char32_t c : u) {
    out += prev_cased ? py_lower(c) : py_title(c);
    prev_cased = py_cased(c);
  }
  return utf8_encode(out);
}

std::string str_capitalize(const std::string& s) {
  std::u32string u = utf8_decode(s);
  for (size_t i = 0; i < u.size(); ++i) u[i] = i == 0 ? py_title(u[i]) : py_lower(u[i]);
  return utf8_encode(u);
}

bool str_islower(const std::string& s, bool upper) {
  bool cased = false;
  for (char32_t c : utf8_decode(s)) {
    if (!py_cased(c)) continue;
    cased = true;
    if (upper ? py_upper(c) != c : py_lower(c) != c) return false;
  }
  return cased;
}

std::string py_center(const std::string& s, int64_t width, char32_t fill, int align /*0 center, -1 left, 1 right*/) {
  int64_t len = static_cast<int64_t>(utf8_length(s));
  if (width <= len) return s;
  if (width > (1 << 26)) throw PyError("LimitError", "padding width too large");
  int64_t marg = width - len;
  int64_t left = align == 0 ? marg / 2 + (marg & width & 1) : align < 0 ? 0 : marg;
  std::string pad_l, pad_r;
  for (int64_t i = 0; i < left; ++i) utf8_append(pad_l, fill);
  for (int64_t i = 0; i < marg - left; ++i) utf8_append(pad_r, fill);
  return pad_l + s + pad_r;
}

// jinja2's do_title splits at runs of whitespace, '-', '(', '{', '[' and '<'.
std::string jinja_title(const std::string& s) {
  std::u32string u = utf8_decode(s), out;
  bool start = true;
  for (char32_t c : u) {
    bool sep = py_isspace(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
    out += sep ? c : start ? py_upper(c) : py_lower(c);  // item[0].upper() + item[1:].lower()
    start = sep;
  }
  return utf8_encode(out);
}

std::string str_join(Interpreter& in, const std::string& sep, const std::vector<Value>& items) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += sep;
    out += py_str(items[i]);
    in.check_size(out.size());
  }
  in.add_steps(static_cast<int64_t>(items.size() + out.size() / 64));
  return out;
}

// datetime.strftime: Python formats %f, %z and %Z itself (a naive datetime has no zone) and
// hands the rest to the C library, flags like %-d included.
std::string py_strftime(const std::string& fmt, const std::tm& tm) {
  std::string f;
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] == '%' && i + 1 < fmt.size()) {
      char d = fmt[i + 1];
      if (d == 'f') f += "000000";  // the clock has whole seconds
      else if (d == 'z' || d == 'Z') {
      } else f += fmt.substr(i, 2);
      ++i;
    } else {
      f += fmt[i];
    }
  }
  if (f.empty()) return "";
  if (f.size() > 4096) throw PyError("LimitError", "strftime format too long");
  f += '\x01';  // strftime returns 0 both for an empty result and a short buffer; a marker tells them apart
  std::vector<char> buf(256 + f.size() * 8);
  size_t n = std::strftime(buf.data(), buf.size(), f.c_str(), &tm);
  if (n == 0) throw PyError("LimitError", "strftime result too long");
  return std::string(buf.data(), n - 1);
}

// Python's str.format with plain fields: {}, {0}, {name}, {{ and }}; no conversions or specs.
std::string py_format(const std::string& f, const Args& pos, const Kwargs& kw) {
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < f.size(); ++i) {
    char c = f[i];
    if (c == '}' ) {
      if (i + 1 < f.size() && f[i + 1] == '}') ++i;
      else throw PyError("ValueError", "Single '}' encountered in format string");
      out += '}';
      continue;
    }
    if (c != '{') {
      out += c;
      continue;
    }
    if (i + 1 < f.size() && f[i + 1] == '{') {
      out += '{';
      ++i;
      continue;
    }
    size_t close = f.find('}', i);
    if (close == std::string::npos) throw PyError("ValueError", "Single '{' encountered in format string");
    std::string field = f.substr(i + 1, close - i - 1);
    if (field.find_first_of("!:[.") != std::string::npos) unsupported("str.format with conversions or format specs");
    const Value* v = nullptr;
    if (field.empty()) {
      if (auto_index >= pos.size()) throw PyError("IndexError", "Replacement index " + std::to_string(auto_index) + " out of range for positional args tuple");
      v = &pos[auto_index++];
    } else if (std::all_of(field.begin(), field.end(), [](char x) { return x >= '0' && x <= '9'; })) {
      size_t k = field.size() < 9 ? std::stoul(field) : SIZE_MAX;
      if (k >= pos.size()) throw PyError("IndexError", "Replacement index " + field + " out of range for positional args tuple");
      v = &pos[k];
    } else {
      for (const auto& [name, val] : kw)
        if (name == field) v = &val;
      if (!v) throw PyError("KeyError", "'" + field + "'");
    }
    out += py_str(*v);
    check_bytes(out.size());
    i = close;
  }
  return out;
}

// ----- bound methods of str, list, tuple and dict -----------------------------------------------------
// Templates call Python methods on values (message.content.split('</think>'), tool.get('x')).
// The sandbox allows every method that does not mutate: mutating ones (list.append, dict.pop,
// ...) are "unsafe" Undefineds that raise SecurityError when called. Method names that exist
// in Python but are not implemented here raise UnsupportedError when called.

class BoundMethod : public Object {
 public:
  BoundMethod(Value self, std::string name) : self_(std::move(self)), name_(std::move(name)) {}
  std::string type_name() const override { return "builtin_function_or_method"; }
  std::string repr() const override { return "<built-in method " + name_ + " of " + jinja::type_name(self_) + " object>"; }
  bool callable() const override { return true; }
  Value call(Interpreter& in, Args& pos, Kwargs& kw) override;

 private:
  Value call_str(Interpreter& in, Args& pos, Kwargs& kw);
  const Value self_;
  const std::string name_;
};

const char* const kStrMethods[] = {
    "capitalize", "casefold", "center", "count", "encode", "endswith", "expandtabs", "find", "format", "format_map",
    "index", "isalnum", "isalpha", "isascii", "isdecimal", "isdigit", "isidentifier", "islower", "isnumeric",
    "isprintable", "isspace", "istitle", "isupper", "join", "ljust", "lower", "lstrip", "maketrans", "partition",
    "removeprefix", "removesuffix", "replace", "rfind", "rindex", "rjust", "rpartition", "rsplit", "rstrip", "split",
    "splitlines", "startswith", "strip", "swapcase", "title", "translate", "upper", "zfill"};
const char* const kListMethods[] = {"copy", "count", "index"};
const char* const kListUnsafe[] = {"append", "clear", "extend", "insert", "pop", "remove", "reverse", "sort"};
const char* const kDictMethods[] = {"copy", "fromkeys", "get", "items", "keys", "values"};
const char* const kDictUnsafe[] = {"clear", "pop", "popitem", "setdefault", "update"};

template <size_t N>
bool among(const char* const (&names)[N], const std::string& name) {
  for (const char* n : names)
    if (name == n) return true;
  return false;
}

Value BoundMethod::call(Interpreter& in, Args& pos, Kwargs& kw) {
  const Value& s = self_;
  if (s.is_string()) return call_str(in, pos, kw);
  if (s.is_dict()) {
    const auto& items = s.dict().items;
    if (name_ == "get") {
      Params p("get", {"key", "default"}, pos, kw);
      if (!p.has(0)) throw_type_error("get expected at least 1 argument, got 0");
      require_hashable(p.at(0));
      const Value* v = s.dict().find(p.at(0));
      return v ? *v : p.get(1, Value::none());
    }
    std::vector<Value> out;
    if (name_ == "items") {
      for (const auto& [k, v] : items) out.push_back(Value::list({k, v}, Seq::kTuple));
      return Value::list(std::move(out), Seq::kDictItems);
    }
    if (name_ == "keys" || name_ == "values") {
      for (const auto& [k, v] : items) out.push_back(name_ == "keys" ? k : v);
      return Value::list(std::move(out), name_ == "keys" ? Seq::kDictKeys : Seq::kDictValues);
    }
    if (name_ == "copy") return s;
  } else if (s.is_list()) {
    if (name_ == "copy") return s;
    if (pos.size() != 1) throw_type_error(name_ + "() takes exactly one argument (" + std::to_string(pos.size()) + " given)");
    int64_t count = 0;
    for (size_t i = 0; i < s.items().size(); ++i) {
      if (!py_equal(s.items()[i], pos[0])) continue;
      if (name_ == "index") return Value::integer(static_cast<int64_t>(i));
      ++count;
    }
    if (name_ == "index") throw PyError("ValueError", py_repr(pos[0]) + " is not in list");
    return Value::integer(count);
  }
  unsupported(jinja::type_name(s) + "." + name_ + "()");
}

Value BoundMethod::call_str(Interpreter& in, Args& pos, Kwargs& kw) {
  const std::string& s = self_.str();
  charge(static_cast<int64_t>(s.size() / 64));
  bool markup = self_.is_markup();
  // Python's messages for a non-str argument differ by method.
  auto str_arg = [&](const Value& v, const char* what) -> const std::string& {
    if (v.is_string()) return v.str();
    std::string m(what);
    if (m == "strip" || m == "lstrip" || m == "rstrip") throw_type_error(m + " arg must be None or str");
    if (m == "sep") throw_type_error("must be str or None, not " + jinja::type_name(v));
    if (m == "replace1" || m == "replace2")
      throw_type_error(std::string("replace() argument ") + m.back() + " must be str, not " + jinja::type_name(v));
    throw_type_error("must be str, not " + jinja::type_name(v));
  };
  const std::string& n = name_;
  if (n == "strip" || n == "lstrip" || n == "rstrip") {
    Params p(n, {"chars"}, pos, kw);
    Value c = p.get(0, Value::none());
    const std::string* chars = c.is_none() ? nullptr : &str_arg(c, n.c_str());
    return Value::string(str_strip(s, chars, n != "rstrip", n != "lstrip"), markup);
  }
  if (n == "split" || n == "rsplit") {
    Params p(n, {"sep", "maxsplit"}, pos, kw);
    Value sep = p.get(0, Value::none());
    int64_t maxsplit = p.has(1) ? to_int(p.at(1), "maxsplit") : -1;
    const std::string* sp = sep.is_none() ? nullptr : &str_arg(sep, "sep");
    std::vector<Value> out;
    for (auto& part : str_split(s, sp, maxsplit, n == "rsplit")) out.push_back(Value::string(std::move(part), markup));
    in.add_steps(static_cast<int64_t>(out.size()));
    return Value::list(std::move(out));
  }
  if (n == "startswith" || n == "endswith") {
    Params p(n, {"prefix", "start", "end"}, pos, kw);
    if (!p.has(0)) throw_type_error(n + "() takes at least 1 argument (0 given)");
    if (p.has(1) || p.has(2)) unsupported(n + "() with start or end");
    std::vector<Value> cands = p.at(0).is_list() && p.at(0).seq() == Seq::kTuple ? p.at(0).items() : std::vector<Value>{p.at(0)};
    for (const Value& c : cands) {
      if (!c.is_string())
        throw_type_error(n + " first arg must be str or a tuple of str, not " + jinja::type_name(c));
      const std::string& x = c.str();
      bool hit = x.size() <= s.size() && (n == "startswith" ? s.compare(0, x.size(), x) == 0
                                                            : s.compare(s.size() - x.size(), x.size(), x) == 0);
      if (hit) return Value::boolean(true);
    }
    return Value::boolean(false);
  }
  if (n == "replace") {
    Params p(n, {"old", "new", "count"}, pos, kw);
    if (!p.has(1)) throw_type_error("replace expected at least 2 arguments, got " + std::to_string(pos.size()));
    int64_t count = p.has(2) ? to_int(p.at(2), "count") : -1;
    std::string r = str_replace(s, str_arg(p.at(0), "replace1"), str_arg(p.at(1), "replace2"), count);
    in.check_size(r.size());
    return Value::string(std::move(r), markup);
  }
  if (n == "lower" || n == "casefold") return Value::string(str_lower(s), markup);
  if (n == "upper") return Value::string(str_upper(s), markup);
  if (n == "title") return Value::string(str_title(s), markup);
  if (n == "capitalize") return Value::string(str_capitalize(s), markup);
  if (n == "swapcase") {
    std::u32string u = utf8_decode(s);
    for (auto& c : u) c = py_lower(c) != c ? py_lower(c) : py_upper(c);  // approximation of swapcase
    return Value::string(utf8_encode(u), markup);
  }
  if (n == "find" || n == "rfind" || n == "index" || n == "rindex" || n == "count") {
    Params p(n, {"sub", "start", "end"}, pos, kw);
    if (!p.has(0)) throw_type_error(n + "() takes at least 1 argument (0 given)");
    if (p.has(1) || p.has(2)) unsupported(n + "() with start or end");
    const std::string& sub = str_arg(p.at(0), n.c_str());
    if (n == "count") {
      if (sub.empty()) return Value::integer(static_cast<int64_t>(utf8_length(s)) + 1);
      int64_t c = 0;
      for (size_t at = s.find(sub); at != std::string::npos; at = s.find(sub, at + sub.size())) ++c;
      return Value::integer(c);
    }
    size_t at = (n[0] == 'r') ? s.rfind(sub) : s.find(sub);
    if (at == std::string::npos) {
      if (n == "index" || n == "rindex") throw PyError("ValueError", "substring not found");
      return Value::integer(-1);
    }
    return Value::integer(static_cast<int64_t>(utf8_length(std::string_view(s).substr(0, at))));
  }
  if (n == "join") {
    if (pos.size() != 1) throw_type_error("str.join() takes exactly one argument (" + std::to_string(pos.size()) + " given)");
    std::vector<Value> items = iterate(pos[0]);
    for (size_t i = 0; i < items.size(); ++i)
      if (!items[i].is_string())
        throw_type_error("sequence item " + std::to_string(i) + ": expected str instance, " + jinja::type_name(items[i]) + " found");
    return Value::string(str_join(in, s, items), markup);
  }
  if (n == "splitlines") {
    Params p(n, {"keepends"}, pos, kw);
    if (truthy(p.get(0, Value::boolean(false)))) unsupported("splitlines(keepends=True)");
    std::vector<Value> out;
    for (auto& l : splitlines(s)) out.push_back(Value::string(std::move(l), markup));
    return Value::list(std::move(out));
  }
  if (n == "removeprefix" || n == "removesuffix") {
    if (pos.size() != 1) throw_type_error(n + "() takes exactly one argument (" + std::to_string(pos.size()) + " given)");
    const std::string& x = str_arg(pos[0], n.c_str());
    if (n == "removeprefix") return Value::string(s.compare(0, x.size(), x) == 0 ? s.substr(x.size()) : s, markup);
    bool ends = x.size() <= s.size() && s.compare(s.size() - x.size(), x.size(), x) == 0;
    return Value::string(ends && !x.empty() ? s.substr(0, s.size() - x.size()) : s, markup);
  }
  if (n == "center" || n == "ljust" || n == "rjust") {
    Params p(n, {"width", "fillchar"}, pos, kw);
    int64_t width = to_int(p.get(0, Value::integer(0)), "width");
    std::u32string fill = utf8_decode(p.has(1) ? str_arg(p.at(1), n.c_str()) : std::string(" "));
    if (fill.size() != 1) throw_type_error("The fill character must be exactly one character long");
    return Value::string(py_center(s, width, fill[0], n == "center" ? 0 : n == "ljust" ? -1 : 1), markup);
  }
  if (n == "zfill") {
    int64_t width = to_int(pos.empty() ? Value() : pos[0], "width");
    int64_t len = static_cast<int64_t>(utf8_length(s));
    if (width <= len) return self_;
    if (width > (1 << 26)) throw PyError("LimitError", "zfill width too large");
    size_t sign = (!s.empty() && (s[0] == '+' || s[0] == '-')) ? 1 : 0;
    return Value::string(s.substr(0, sign) + std::string(width - len, '0') + s.substr(sign), markup);
  }
  if (n == "format") {
    std::string r = py_format(s, pos, kw);
    in.check_size(r.size());
    return Value::string(std::move(r), markup);
  }
  if (n.rfind("is", 0) == 0) {
    std::u32string u = utf8_decode(s);
    auto all = [&](auto pred) { return !u.empty() && std::all_of(u.begin(), u.end(), pred); };
    if (n == "isdigit" || n == "isdecimal" || n == "isnumeric") return Value::boolean(all(py_isdigit));
    if (n == "isalpha") return Value::boolean(all(py_isalpha));
    if (n == "isalnum") return Value::boolean(all(py_isalnum));
    if (n == "isspace") return Value::boolean(all(py_isspace));
    if (n == "islower") return Value::boolean(str_islower(s, false));
    if (n == "isupper") return Value::boolean(str_islower(s, true));
    if (n == "isascii") return Value::boolean(std::all_of(u.begin(), u.end(), [](char32_t c) { return c < 0x80; }));
  }
  unsupported("str." + n + "()");
}

// ----- globals -----------------------------------------------------------------------------------------
// jinja2's range (capped by the sandbox) and transformers' additions. lipsum, cycler and joiner
// exist in jinja2 but no chat template uses them.

class Builtin : public Object {
 public:
  using Fn = std::function<Value(Interpreter&, Args&, Kwargs&)>;
  Builtin(std::string name, Fn fn) : name_(std::move(name)), fn_(std::move(fn)) {}
  std::string type_name() const override { return "builtin_function_or_method"; }
  std::string repr() const override { return "<built-in function " + name_ + ">"; }
  bool callable() const override { return true; }
  Value call(Interpreter& in, Args& pos, Kwargs& kw) override { return fn_(in, pos, kw); }

 private:
  std::string name_;
  Fn fn_;
};

// dict(mapping_or_pairs, **kwargs), as Python builds it.
Value make_dict(const Args& pos, const Kwargs& kw) {
  if (pos.size() > 1) throw_type_error("dict expected at most 1 argument, got " + std::to_string(pos.size()));
  std::vector<std::pair<Value, Value>> items;
  if (!pos.empty()) {
    if (pos[0].is_dict()) {
      items = pos[0].dict().items;
    } else {
      for (const Value& pair : iterate(pos[0])) {
        std::vector<Value> kv = iterate(pair);
        if (kv.size() != 2)
          throw PyError("ValueError", "dictionary update sequence element has length " + std::to_string(kv.size()) + "; 2 is required");
        require_hashable(kv[0]);
        items.emplace_back(kv[0], kv[1]);
      }
    }
  }
  for (const auto& [k, v] : kw) items.emplace_back(Value::string(k), v);
  return Value::dict(std::move(items));
}

const std::map<std::string, Value>& globals() {
  static const std::map<std::string, Value> g = [] {
    std::map<std::string, Value> m;
    auto add = [&m](const std::string& name, Builtin::Fn fn) {
      m[name] = Value::object(std::make_shared<Builtin>(name, std::move(fn)));
    };
    add("range", [](Interpreter& in, Args& pos, Kwargs& kw) {
      if (!kw.empty()) throw_type_error("range() takes no keyword arguments");
      if (pos.empty() || pos.size() > 3) throw_type_error("range expected at least 1 argument, got " + std::to_string(pos.size()));
      int64_t start = 0, stop, step = 1;
      if (pos.size() == 1) stop = to_int(pos[0], "range");
      else start = to_int(pos[0], "range"), stop = to_int(pos[1], "range");
      if (pos.size() == 3) step = to_int(pos[2], "range");
      if (step == 0) throw PyError("ValueError", "range() arg 3 must not be zero");
      // The sandbox refuses ranges longer than MAX_RANGE = 100000.
      long double len = step > 0 ? (stop > start ? (static_cast<long double>(stop) - start + step - 1) / step : 0)
                                 : (start > stop ? (static_cast<long double>(start) - stop - step - 1) / -step : 0);
      if (len > 100000)
        throw PyError("OverflowError", "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
      std::vector<Value> items;
      for (int64_t i = 0; i < static_cast<int64_t>(len); ++i) items.push_back(Value::integer(start + i * step));
      in.add_steps(static_cast<int64_t>(items.size()));
      return Value::list(std::move(items));
    });
    add("namespace", [](Interpreter& in, Args& pos, Kwargs& kw) {
      Value d = make_dict(pos, kw);
      auto ns = std::make_shared<NamespaceObj>();
      for (const auto& [k, v] : d.dict().items) {
        if (!k.is_string()) throw_type_error("keywords must be strings");
        ns->set(k.str(), v);
      }
      in.track_namespace(ns);
      return Value::object(ns);
    });
    add("dict", [](Interpreter&, Args& pos, Kwargs& kw) { return make_dict(pos, kw); });
    add("raise_exception", [](Interpreter&, Args& pos, Kwargs& kw) -> Value {
      Params p("raise_exception", {"message"}, pos, kw);
      if (!p.has(0)) throw_type_error("raise_exception() missing 1 required positional argument: 'message'");
      throw PyError("TemplateError", py_str(p.at(0)));
    });
    add("strftime_now", [](Interpreter& in, Args& pos, Kwargs& kw) {
      Params p("strftime_now", {"format"}, pos, kw);
      if (!p.has(0) || !p.at(0).is_string()) throw_type_error("strftime() argument 1 must be str");
      return Value::string(py_strftime(p.at(0).str(), in.now()));
    });
    for (const char* name : {"lipsum", "cycler", "joiner"})
      add(name, [name](Interpreter&, Args&, Kwargs&) -> Value { unsupported(std::string(name) + "()"); });
    return m;
  }();
  return g;
}

// ----- filters -----------------------------------------------------------------------------------------

Value filter_tojson(const Value& input, const Args& pos, const Kwargs& kw) {
  // transformers' tojson: json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)
  Params p("tojson", {"ensure_ascii", "indent", "separators", "sort_keys"}, pos, kw);
  JsonOptions o;
  o.ensure_ascii = truthy(p.get(0, Value::boolean(false)));
  Value indent = p.get(1, Value::none());
  if (indent.is_string()) {
    o.has_indent = true, o.indent = indent.str();
  } else if (indent.is_int() || indent.is_bool()) {
    o.has_indent = true;
    int64_t n = indent.as_int();
    if (n > 4096) throw PyError("LimitError", "tojson indent too large");
    o.indent = std::string(std::max<int64_t>(0, n), ' ');
  } else if (!indent.is_none()) {
    throw_type_error("can't multiply sequence by non-int of type '" + type_name(indent) + "'");
  }
  if (o.has_indent) o.item_sep = ",";
  Value seps = p.get(2, Value::none());
  if (!seps.is_none()) {
    std::vector<Value> s = iterate(seps);
    if (s.size() != 2) throw PyError("ValueError", "too many values to unpack (expected 2)");
    if (!s[0].is_string() || !s[1].is_string()) throw_type_error("separators must be strings");
    o.item_sep = s[0].str(), o.key_sep = s[1].str();
  }
  o.sort_keys = truthy(p.get(3, Value::boolean(false)));
  return Value::string(to_json(input, o));
}

Value filter_indent(Interpreter& in, const Value& input, const Args& pos, const Kwargs& kw) {
  Params p("do_indent", {"width", "first", "blank"}, pos, kw);
  Value width = p.get(0, Value::integer(4));
  std::string indention;
  if (width.is_string()) indention = width.str();
  else indention = std::string(std::max<int64_t>(0, std::min<int64_t>(to_int(width, "width"), 4096)), ' ');
  if (input.is_undefined()) raise_undefined(input);
  if (!input.is_string()) {
    // `s += "\n"` then s.splitlines(), as jinja2's do_indent runs them on a non-string.
    if (input.is_list() && input.seq() == Seq::kList)
      throw PyError("AttributeError", "'list' object has no attribute 'splitlines'");
    if (input.is_list() && input.seq() == Seq::kTuple) throw_type_error("can only concatenate tuple (not \"str\") to tuple");
    throw_type_error("unsupported operand type(s) for +=: '" + type_name(input) + "' and 'str'");
  }
  std::vector<std::string> lines = splitlines(input.str() + "\n");
  std::string rv;
  if (truthy(p.get(2, Value::boolean(false)))) {
    for (size_t i = 0; i < lines.size(); ++i) {
      rv += (i ? "\n" + indention : "") + lines[i];
      check_bytes(rv.size());
    }
  } else {
    rv = lines.empty() ? "" : lines[0];
    for (size_t i = 1; i < lines.size(); ++i) {
      rv += "\n" + (lines[i].empty() ? "" : indention + lines[i]);
      check_bytes(rv.size());
    }
  }
  if (truthy(p.get(1, Value::boolean(false)))) rv = indention + rv;
  in.check_size(rv.size());
  return Value::string(std::move(rv), input.is_markup());
}

// select / reject / selectattr / rejectattr: the items whose test (or truthiness) passes.
Value filter_select(Interpreter& in, const Value& input, const Args& pos, const Kwargs& kw, bool attr, bool keep) {
  if (!truthy(input)) return generator({});
  size_t next = 0;
  std::vector<Value> path;
  if (attr) {
    if (pos.empty()) throw_type_error("selectattr() missing the attribute argument");
    path = attribute_parts(pos[next++]);
  }
  std::string test_name;
  Args test_args;
  if (next < pos.size()) {
    if (!pos[next].is_string()) throw_type_error("test name must be a string");
    test_name = pos[next++].str();
    test_args.assign(pos.begin() + next, pos.end());
  }
  std::vector<Value> out;
  for (const Value& item : iterate(input)) {
    in.add_steps(1);
    Value v = attr ? lookup_path(in, item, path) : item;
    bool pass;
    if (test_name.empty()) {
      pass = truthy(v);
    } else {
      Args a = test_args;
      Kwargs k = kw;
      if (!is_known_test(test_name)) throw PyError("TemplateRuntimeError", "No test named '" + test_name + "'.");
      pass = in.test(test_name, v, a, k);
    }
    if (pass == keep) out.push_back(item);
  }
  return generator(std::move(out));
}

// map(attribute='a.b', default=x) or map('filter', args...); like select, a falsy input gives an
// empty generator without looking at it (jinja2's `if value:`).
Value filter_map(Interpreter& in, const Value& input, const Args& pos, const Kwargs& kw) {
  if (!truthy(input)) return generator({});
  std::vector<Value> out;
  if (pos.empty()) {
    Value attribute, def;
    bool have_attr = false, have_def = false;
    for (const auto& [k, v] : kw) {
      if (k == "attribute") attribute = v, have_attr = true;
      else if (k == "default") def = v, have_def = !v.is_none();
      else throw PyError("FilterArgumentError", "Unexpected keyword argument '" + k + "'");
    }
    if (!have_attr) throw PyError("FilterArgumentError", "map requires a filter argument");
    std::vector<Value> path = attribute_parts(attribute);
    for (const Value& item : iterate(input)) out.push_back(lookup_path(in, item, path, have_def ? &def : nullptr));
  } else {
    if (!pos[0].is_string()) throw_type_error("filter name must be a string");
    std::string name = pos[0].str();
    if (!is_known_filter(name)) throw PyError("TemplateRuntimeError", "No filter named '" + name + "'.");
    for (const Value& item : iterate(input)) {
      Args a(pos.begin() + 1, pos.end());
      Kwargs k = kw;
      out.push_back(in.filter(name, item, a, k));
    }
  }
  return generator(std::move(out));
}

Value min_max(Interpreter& in, const Value& input, const Args& pos, const Kwargs& kw, bool is_max) {
  Params p(is_max ? "do_max" : "do_min", {"case_sensitive", "attribute"}, pos, kw);
  std::vector<Value> items = iterate(input);
  if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
  auto key = key_func(in, p.get(1, Value::none()), truthy(p.get(0, Value::boolean(false))), false);
  size_t best = 0;
  Value best_key = key(items[0]);
  for (size_t i = 1; i < items.size(); ++i) {
    Value k = key(items[i]);
    if (py_compare(is_max ? ">" : "<", k, best_key)) best = i, best_key = k;  // as CPython's min()/max()
  }
  return items[best];
}

Value do_round(const Value& input, const Args& pos, const Kwargs& kw) {
  Params p("do_round", {"precision", "method"}, pos, kw);
  int64_t precision = to_int(p.get(0, Value::integer(0)), "precision");
  std::string method = p.has(1) && p.at(1).is_string() ? p.at(1).str() : "common";
  if (method != "common" && method != "ceil" && method != "floor")
    throw PyError("FilterArgumentError", "method must be common, ceil or floor");
  if (!input.is_number()) throw_type_error("type " + type_name(input) + " doesn't define __round__ method");
  if (method == "common") {
    if (!input.is_float()) return Value::integer(input.as_int());  // round(int, n >= 0) is the int
    double x = input.as_float();
    if (!std::isfinite(x)) return input;
    if (precision == 0) return Value::number(std::nearbyint(x));
    if (precision > 0 && precision < 300) {
      // Python rounds the exact binary value half-to-even, as printf does.
      char buf[400];
      std::snprintf(buf, sizeof buf, "%.*f", static_cast<int>(precision), x);
      return Value::number(std::strtod(buf, nullptr));
    }
    double m = std::pow(10.0, static_cast<double>(precision));
    return Value::number(std::nearbyint(x * m) / m);
  }
  double m = std::pow(10.0, static_cast<double>(precision));
  double v = method == "ceil" ? std::ceil(input.as_float() * m) : std::floor(input.as_float() * m);
  return Value::number(v / m);
}

Value to_int_filter(const Value& input, const Args& pos, const Kwargs& kw) {
  Params p("do_int", {"default", "base"}, pos, kw);
  Value def = p.get(0, Value::integer(0));
  int64_t base = to_int(p.get(1, Value::integer(10)), "base");
  if (input.is_undefined()) raise_undefined(input);
  if (input.is_int() || input.is_bool()) return Value::integer(input.as_int());
  double f;
  if (input.is_float()) {
    f = input.as_float();
  } else if (input.is_string()) {
    int64_t i;
    if (base >= 2 && base <= 36 && parse_py_int(input.str(), static_cast<int>(base), i)) return Value::integer(i);
    if (!parse_py_float(input.str(), f)) return def;  // "42.23"|int gives 42, as in jinja2
  } else {
    return def;
  }
  if (!std::isfinite(f) || std::fabs(f) >= 9.2e18) return def;
  return Value::integer(static_cast<int64_t>(f));
}

}  // namespace

// ----- namespace ---------------------------------------------------------------------------------------

std::string NamespaceObj::repr() const {
  // Guards against namespaces that contain themselves; Python would hit its recursion limit.
  static thread_local int depth = 0;
  if (depth > kMaxNesting) throw PyError("RecursionError", "maximum recursion depth exceeded while getting the repr of an object");
  ++depth;
  struct Dec {
    ~Dec() { --depth; }
  } dec;
  std::vector<std::pair<Value, Value>> items;
  for (const auto& [k, v] : attrs_) items.emplace_back(Value::string(k), v);
  std::string inner;
  for (size_t i = 0; i < items.size(); ++i)
    inner += (i ? ", " : "") + py_repr(items[i].first) + ": " + py_repr(items[i].second);
  return "<Namespace {" + inner + "}>";
}

Value NamespaceObj::attr(const std::string& name) const {
  for (const auto& [k, v] : attrs_)
    if (k == name) return v;
  return Value::undefined("'transformers.utils.chat_template_utils.TemplateNamespace object' has no attribute '" +
                          name + "'");
}

void NamespaceObj::set(const std::string& name, Value v) {
  if (!name.empty() && name[0] == '_')
    throw PyError("SecurityError", "Chat templates cannot store underscore-prefixed attributes on a namespace, but got '" +
                                       name + "'. Please rename the attribute.");
  if (v.depth() + 1 > kMaxNesting) throw PyError("ValueError", "value nested more than " + std::to_string(kMaxNesting) + " levels deep");
  depth_ = std::max(depth_, v.depth() + 1);
  for (auto& kv : attrs_)
    if (kv.first == name) {
      kv.second = std::move(v);
      return;
    }
  attrs_.emplace_back(name, std::move(v));
}

// ----- public entry points -----------------------------------------------------------------------------

Value builtin_global(const std::string& name) {
  const auto& g = globals();
  auto it = g.find(name);
  return it == g.end() ? Value() : it->second;
}

std::optional<Value> builtin_method(const Value& obj, const std::string& name) {
  auto unsafe = [&](const char* type) {
    return Value::undefined("access to attribute '" + name + "' of '" + type + "' object is unsafe.", true);
  };
  if (name.size() > 4 && name.compare(0, 2, "__") == 0 && name.compare(name.size() - 2, 2, "__") == 0)
    return unsafe(type_name(obj).c_str());  // Python internals are never safe
  if (obj.is_string() && among(kStrMethods, name))
    return Value::object(std::make_shared<BoundMethod>(obj, name));
  if (obj.is_dict()) {
    if (among(kDictUnsafe, name)) return unsafe("dict");
    if (among(kDictMethods, name)) return Value::object(std::make_shared<BoundMethod>(obj, name));
  }
  if (obj.is_list() && (obj.seq() == Seq::kList || obj.seq() == Seq::kTuple)) {
    if (obj.seq() == Seq::kList && among(kListUnsafe, name)) return unsafe("list");
    if (among(kListMethods, name) && !(obj.seq() == Seq::kTuple && name == "copy"))
      return Value::object(std::make_shared<BoundMethod>(obj, name));
  }
  return std::nullopt;
}

// jinja2's builtin filters, by name. Results keep Python's types: map/select/items/unique/
// reverse return generators (no len(), not JSON-serializable), sort/dictsort/list return lists.
Value apply_filter(Interpreter& in, const std::string& name, const Value& input, Args& pos, Kwargs& kw) {
  const std::string& n = name;
  auto params = [&](std::initializer_list<const char*> names) { return Params("do_" + n, names, pos, kw); };
  auto str_of = [&](const Value& v) {
    if (v.is_undefined() && v.is_unsafe_undefined()) return std::string();
    return py_str(v);
  };
  if (input.is_string()) charge(static_cast<int64_t>(input.str().size() / 64));
  if (n == "tojson") return filter_tojson(input, pos, kw);
  if (n == "length" || n == "count") return Value::integer(py_len(input));
  if (n == "string") return input.is_string() ? input : Value::string(str_of(input));
  if (n == "trim") {
    Params p = params({"chars"});
    Value c = p.get(0, Value::none());
    if (!c.is_none() && !c.is_string()) throw_type_error("strip arg must be None or str");
    return Value::string(str_strip(str_of(input), c.is_none() ? nullptr : &c.str(), true, true), input.is_markup());
  }
  if (n == "upper") return Value::string(str_upper(str_of(input)), input.is_markup());
  if (n == "lower") return Value::string(str_lower(str_of(input)), input.is_markup());
  if (n == "capitalize") return Value::string(str_capitalize(str_of(input)), input.is_markup());
  if (n == "title") return Value::string(jinja_title(str_of(input)));  // "".join(...): plain str
  if (n == "default" || n == "d") {
    Params p = params({"default_value", "boolean"});
    bool boolean = truthy(p.get(1, Value::boolean(false)));
    if (input.is_undefined() || (boolean && !truthy(input))) return p.get(0, Value::string(""));
    return input;
  }
  if (n == "join") {
    Params p = params({"d", "attribute"});
    std::vector<Value> items = iterate(input);
    if (p.has(1) && !p.at(1).is_none()) {
      std::vector<Value> path = attribute_parts(p.at(1));
      for (Value& x : items) x = lookup_path(in, x, path);
    }
    return Value::string(str_join(in, py_str(p.get(0, Value::string(""))), items));
  }
  if (n == "replace") {
    Params p = params({"old", "new", "count"});
    if (!p.has(1)) throw_type_error("do_replace() missing required arguments");
    int64_t count = p.has(2) && !p.at(2).is_none() ? to_int(p.at(2), "count") : 0;
    std::string r = str_replace(str_of(input), py_str(p.at(0)), py_str(p.at(1)), count ? count : -1);
    in.check_size(r.size());
    return Value::string(std::move(r));
  }
  if (n == "list") {
    std::vector<Value> items = iterate(input);
    in.add_steps(static_cast<int64_t>(items.size()));
    return Value::list(std::move(items));
  }
  if (n == "items") {
    if (input.is_undefined()) return generator({});
    if (!input.is_dict()) throw_type_error("Can only get item pairs from a mapping.");
    std::vector<Value> out;
    for (const auto& [k, v] : input.dict().items) out.push_back(Value::list({k, v}, Seq::kTuple));
    return generator(std::move(out));
  }
  if (n == "dictsort") {
    Params p = params({"case_sensitive", "by", "reverse"});
    bool cs = truthy(p.get(0, Value::boolean(false)));
    Value by = p.get(1, Value::string("key"));
    if (!by.is_string() || (by.str() != "key" && by.str() != "value"))
      throw PyError("FilterArgumentError", "You can only sort by either \"key\" or \"value\"");
    if (input.is_undefined()) raise_undefined(input);
    if (!input.is_dict()) throw PyError("AttributeError", "'" + type_name(input) + "' object has no attribute 'items'");
    std::vector<Value> items;
    for (const auto& [k, v] : input.dict().items) items.push_back(Value::list({k, v}, Seq::kTuple));
    size_t pos_ = by.str() == "key" ? 0 : 1;
    bool rev = truthy(p.get(2, Value::boolean(false)));
    auto key = [&](const Value& x) { return cs ? x.items()[pos_] : ignore_case(x.items()[pos_]); };
    stable_sort(items, [&](const Value& a, const Value& b) { return rev ? py_less(key(b), key(a)) : py_less(key(a), key(b)); });
    in.add_steps(static_cast<int64_t>(items.size()));
    return Value::list(std::move(items));
  }
  if (n == "sort") {
    Params p = params({"reverse", "case_sensitive", "attribute"});
    std::vector<Value> items = iterate(input);
    auto key = key_func(in, p.get(2, Value::none()), truthy(p.get(1, Value::boolean(false))), true);
    std::vector<Value> keyed;
    for (size_t i = 0; i < items.size(); ++i) keyed.push_back(Value::list({key(items[i]), Value::integer(static_cast<int64_t>(i))}, Seq::kTuple));
    bool rev = truthy(p.get(0, Value::boolean(false)));
    stable_sort(keyed, [&](const Value& a, const Value& b) {
      return rev ? py_less(b.items()[0], a.items()[0]) : py_less(a.items()[0], b.items()[0]);
    });
    std::vector<Value> out;
    for (const Value& k : keyed) out.push_back(items[k.items()[1].as_int()]);
    in.add_steps(static_cast<int64_t>(items.size()));
    return Value::list(std::move(out));
  }
  if (n == "unique") {
    Params p = params({"case_sensitive", "attribute"});
    auto key = key_func(in, p.get(1, Value::none()), truthy(p.get(0, Value::boolean(false))), false);
    std::vector<Value> seen, out;
    for (const Value& item : iterate(input)) {
      Value k = key(item);
      require_hashable(k);
      in.add_steps(static_cast<int64_t>(seen.size()) + 1);
      if (std::none_of(seen.begin(), seen.end(), [&](const Value& s) { return py_equal(s, k); }))
        seen.push_back(k), out.push_back(item);
    }
    return generator(std::move(out));
  }
  if (n == "min" || n == "max") return min_max(in, input, pos, kw, n == "max");
  if (n == "first" || n == "last") {
    // last uses reversed(), which needs a sequence (or a dict); first iterates.
    bool reversible = input.is_string() || input.is_dict() || input.is_undefined() ||
                      (input.is_list() && input.seq() != Seq::kGenerator);
    if (n == "last" && !reversible) throw_type_error("'" + type_name(input) + "' object is not reversible");
    std::vector<Value> items = iterate(input);
    if (items.empty()) return Value::undefined(n == "first" ? "No first item, sequence was empty." : "No last item, sequence was empty.");
    // reversed() indexes a Markup, whose items are Markup; iterating gives plain str.
    if (n == "last" && input.is_markup()) return Value::string(items.back().str(), true);
    return n == "first" ? items.front() : items.back();
  }
  if (n == "reverse") {
    if (input.is_string()) {
      std::u32string u = utf8_decode(input.str());
      std::reverse(u.begin(), u.end());
      return Value::string(utf8_encode(u), input.is_markup());
    }
    if (!(input.is_list() || input.is_dict() || input.is_undefined()))
      throw PyError("FilterArgumentError", "argument must be iterable");
    std::vector<Value> items = iterate(input);
    std::reverse(items.begin(), items.end());
    return generator(std::move(items));
  }
  if (n == "map") return filter_map(in, input, pos, kw);
  if (n == "select" || n == "reject") return filter_select(in, input, pos, kw, false, n == "select");
  if (n == "selectattr" || n == "rejectattr") return filter_select(in, input, pos, kw, true, n == "selectattr");
  if (n == "safe") return input.is_markup() ? input : Value::string(str_of(input), true);
  if (n == "escape" || n == "e" || n == "forceescape") {
    if (input.is_markup() && n != "forceescape") return input;
    return Value::string(html_escape(str_of(input)), true);
  }
  if (n == "indent") return filter_indent(in, input, pos, kw);
  if (n == "int") return to_int_filter(input, pos, kw);
  if (n == "float") {
    Params p = params({"default"});
    if (input.is_undefined()) raise_undefined(input);
    if (input.is_number()) return Value::number(input.as_float());
    double f;
    if (input.is_string() && parse_py_float(input.str(), f)) return Value::number(f);
    return p.get(0, Value::number(0.0));
  }
  if (n == "abs") {
    if (input.is_float()) return Value::number(std::fabs(input.as_float()));
    if (input.is_number()) {
      if (input.as_int() == INT64_MIN) throw PyError("OverflowError", "integer overflow");
      return Value::integer(std::llabs(input.as_int()));
    }
    throw_type_error("bad operand type for abs(): '" + type_name(input) + "'");
  }
  if (n == "round") return do_round(input, pos, kw);
  if (n == "sum") {
    Params p = params({"attribute", "start"});
    Value total = p.get(1, Value::integer(0));
    std::vector<Value> path = attribute_parts(p.get(0, Value::none()));
    for (const Value& item : iterate(input)) total = binary_op(in, "+", total, lookup_path(in, item, path));
    return total;
  }
  if (n == "center") {
    Params p = params({"width"});
    return Value::string(py_center(str_of(input), to_int(p.get(0, Value::integer(80)), "width"), ' ', 0), input.is_markup());
  }
  if (n == "wordcount") {
    int64_t words = 0;
    bool in_word = false;
    for (char32_t c : utf8_decode(str_of(input))) {
      bool w = c == '_' || py_isalnum(c);  // Python's \w
      if (w && !in_word) ++words;
      in_word = w;
    }
    return Value::integer(words);
  }
  if (n == "batch" || n == "slice") {
    Params p = params({n == "batch" ? "linecount" : "slices", "fill_with"});
    int64_t count = to_int(p.get(0, Value()), n.c_str());
    Value fill = p.get(1, Value::none());
    std::vector<Value> items = iterate(input), out;
    if (n == "batch") {
      std::vector<Value> tmp;
      for (const Value& x : items) {
        if (static_cast<int64_t>(tmp.size()) == count) out.push_back(Value::list(std::move(tmp))), tmp.clear();
        tmp.push_back(x);
      }
      if (!tmp.empty()) {
        while (!fill.is_none() && static_cast<int64_t>(tmp.size()) < count) tmp.push_back(fill);
        out.push_back(Value::list(std::move(tmp)));
      }
    } else {
      if (count <= 0) throw PyError("ZeroDivisionError", "integer division or modulo by zero");
      if (count > 100000) throw PyError("LimitError", "too many slices");
      int64_t len = static_cast<int64_t>(items.size()), per = len / count, extra = len % count, offset = 0;
      for (int64_t k = 0; k < count; ++k) {
        int64_t start = offset + k * per;
        if (k < extra) ++offset;
        int64_t end = offset + (k + 1) * per;
        std::vector<Value> tmp(items.begin() + start, items.begin() + end);
        if (!fill.is_none() && k >= extra) tmp.push_back(fill);
        out.push_back(Value::list(std::move(tmp)));
      }
    }
    in.add_steps(static_cast<int64_t>(items.size() + out.size()));
    return generator(std::move(out));
  }
  if (n == "attr") {
    if (pos.size() != 1 || !pos[0].is_string()) throw_type_error("do_attr() takes exactly one name argument");
    if (input.is_object()) return input.object().attr(pos[0].str());
    if (std::optional<Value> m = builtin_method(input, pos[0].str())) return *m;
    return Value::undefined("'" + object_type_repr(input) + "' has no attribute '" + pos[0].str() + "'");
  }
  unsupported("the '" + n + "' filter");
}

// jinja2's tests (tests.py). Note the Python-isms: bool is a number, a dict is a sequence and so
// is Undefined (it has len() and __getitem__), a generator is iterable but not a sequence.
bool apply_test(Interpreter& in, const std::string& name, const Value& v, Args& pos, Kwargs& kw) {
  const std::string& n = name;
  auto arg = [&]() -> const Value& {
    if (pos.size() != 1 || !kw.empty()) throw_type_error("test '" + n + "' takes exactly one argument");
    return pos[0];
  };
  if (n == "defined") return !v.is_undefined();
  if (n == "undefined") return v.is_undefined();
  if (n == "none") return v.is_none();
  if (n == "boolean") return v.is_bool();
  if (n == "false") return v.is_bool() && !v.as_bool();
  if (n == "true") return v.is_bool() && v.as_bool();
  if (n == "integer") return v.is_int();
  if (n == "float") return v.is_float();
  if (n == "number") return v.is_number();
  if (n == "string") return v.is_string();
  if (n == "mapping") return v.is_dict();
  if (n == "sequence")  // has len() and __getitem__ (Undefined has both)
    return v.is_string() || v.is_dict() || v.is_undefined() ||
           (v.is_list() && (v.seq() == Seq::kList || v.seq() == Seq::kTuple));
  if (n == "iterable")
    return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined() ||
           (v.is_object() && v.object().type_name() == "LoopContext");
  if (n == "callable") return v.is_undefined() || (v.is_object() && v.object().callable());  // Undefined has __call__
  if (n == "escaped") return v.is_markup();
  if (n == "lower" || n == "upper") return str_islower(py_str(v), n == "upper");
  if (n == "odd" || n == "even" || n == "divisibleby") {
    Value d = n == "divisibleby" ? arg() : Value::integer(2);
    // value % 2 == 1 for odd (so 1.5 is neither odd nor even), value % n == 0 otherwise.
    Value r = binary_op(in, "%", v, d);
    return py_equal(r, Value::integer(n == "odd" ? 1 : 0));
  }
  if (n == "sameas") {
    const Value& o = arg();
    if (v.kind() != o.kind()) return false;
    if (v.is_none() || v.is_undefined()) return true;
    if (v.is_bool() || v.is_int()) return v.as_int() == o.as_int();
    if (v.is_float()) return false;
    return v.identity() == o.identity();
  }
  if (n == "in") return py_contains(arg(), v);
  if (n == "filter") return v.is_string() && is_known_filter(v.str());
  if (n == "test") return v.is_string() && is_known_test(v.str());
  static const std::pair<const char*, const char*> kCompare[] = {
      {"==", "=="}, {"eq", "=="}, {"equalto", "=="}, {"!=", "!="}, {"ne", "!="}, {">", ">"}, {"gt", ">"},
      {"greaterthan", ">"}, {">=", ">="}, {"ge", ">="}, {"<", "<"}, {"lt", "<"}, {"lessthan", "<"}, {"<=", "<="},
      {"le", "<="}};
  for (const auto& [alias, op] : kCompare) {
    if (n != alias) continue;
    return py_compare(op, v, arg());
  }
  unsupported("the '" + n + "' test");
}

}  // namespace quanta::tokenizer::jinja
