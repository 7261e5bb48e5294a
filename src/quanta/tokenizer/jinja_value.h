// Values of the chat-template interpreter, with Python's semantics.
//
// Chat templates are Jinja2 run by Python, so what they print depends on Python's rules:
// str() and repr() of floats, bools, None, lists and dicts; json.dumps; `+` on strings and
// lists; truthiness; dicts that keep insertion order. A Value is one of: undefined (Jinja's
// Undefined, carrying the message it raises when used), None, bool, int, float, str (UTF-8,
// optionally Markup), a sequence (list, tuple, or the one-pass iterables that filters and
// dict.items() return), a dict, or an object (namespace, macro, loop, bound method...).
//
// Invariants: strings are valid UTF-8; lists and dicts are immutable once built (the sandbox
// that transformers uses forbids mutating them), so copies share storage; containers nest at
// most kMaxNesting deep, which bounds every recursive walk (printing, JSON, comparison, and
// destruction). Namespaces are the only mutable objects.
//
// Non-goals: integers beyond 64 bits; context-dependent case mappings (Greek final sigma).
// Unicode properties come from utf8proc, whose Unicode version may differ from Python's.
#pragma once

#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace quanta::tokenizer::jinja {

// An error as Python's jinja2 would raise it: the exception's type name and its message.
// The interpreter adds the template position when it turns this into a TemplateError.
struct PyError : std::exception {
  PyError(std::string type_, std::string message_) : type(std::move(type_)), message(std::move(message_)) {}
  const char* what() const noexcept override { return message.c_str(); }
  std::string type;     // "TypeError", "UndefinedError", "TemplateError", ...
  std::string message;  // str(exception) in Python
};
[[noreturn]] void throw_type_error(const std::string& message);

constexpr int kMaxNesting = 256;

// The work one render may do. Every operation whose cost a template controls (loops, calls,
// comparisons, printing, JSON, string methods) charges it, so no input makes a render hang
// or allocate without bound. The interpreter installs one per render on its thread.
struct Budget {
  int64_t steps = 0;
  int64_t max_steps = INT64_MAX;
  size_t max_bytes = SIZE_MAX;  // any one string
  size_t max_items = SIZE_MAX;  // any one list or dict
};
class BudgetScope {
 public:
  explicit BudgetScope(Budget& b);
  ~BudgetScope();
  BudgetScope(const BudgetScope&) = delete;
  BudgetScope& operator=(const BudgetScope&) = delete;

 private:
  Budget* saved_;
};
// Each throws PyError("LimitError", ...) past the budget; without one they do nothing.
void charge(int64_t steps);
// One step per 64 bytes a builtin reads or writes (printing, comparing, searching strings), so
// a loop over one huge string ends at the step limit instead of running for minutes.
void charge_bytes(size_t n);
void check_bytes(size_t n);
void check_items(size_t n);

class Value;
class Object;
using Args = std::vector<Value>;

enum class Kind : uint8_t { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kObject };
// What Python type a kList value stands for. Generators and dict views iterate like lists but
// have no len(), are not JSON-serializable and print differently.
enum class Seq : uint8_t { kList, kTuple, kGenerator, kDictItems, kDictKeys, kDictValues };

struct ListData {
  std::vector<Value> items;
  Seq seq = Seq::kList;
  int depth = 1;
};
struct DictData {
  std::vector<std::pair<Value, Value>> items;  // insertion order, keys unique
  int depth = 1;
  const Value* find(const Value& key) const;
};

class Value {
 public:
  Value() = default;  // undefined, with the default message
  static Value none();
  static Value boolean(bool b);
  static Value integer(int64_t i);
  static Value number(double f);
  static Value string(std::string s, bool markup = false);
  static Value list(std::vector<Value> items, Seq seq = Seq::kList);
  static Value dict(std::vector<std::pair<Value, Value>> items);  // later duplicate keys win
  static Value object(std::shared_ptr<Object> o);
  // An undefined value; using it raises UndefinedError(hint), or SecurityError if unsafe.
  static Value undefined(std::string hint, bool unsafe = false);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_bool() const { return kind_ == Kind::kBool; }
  bool is_int() const { return kind_ == Kind::kInt; }    // not bool
  bool is_float() const { return kind_ == Kind::kFloat; }
  bool is_number() const { return kind_ == Kind::kBool || kind_ == Kind::kInt || kind_ == Kind::kFloat; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_dict() const { return kind_ == Kind::kDict; }
  bool is_object() const { return kind_ == Kind::kObject; }
  bool is_markup() const { return kind_ == Kind::kString && flag_; }
  bool is_unsafe_undefined() const { return kind_ == Kind::kUndefined && flag_; }

  bool as_bool() const { return b_; }
  int64_t as_int() const { return kind_ == Kind::kBool ? (b_ ? 1 : 0) : i_; }
  double as_float() const { return kind_ == Kind::kFloat ? f_ : static_cast<double>(as_int()); }
  const std::string& str() const;  // kString; the hint for kUndefined
  const ListData& list() const { return *static_cast<const ListData*>(p_.get()); }
  const std::vector<Value>& items() const { return list().items; }
  Seq seq() const { return list().seq; }
  const DictData& dict() const { return *static_cast<const DictData*>(p_.get()); }
  Object& object() const { return *static_cast<Object*>(p_.get()); }
  std::shared_ptr<Object> object_ptr() const { return std::static_pointer_cast<Object>(p_); }
  int depth() const;  // containers: nesting depth; others 0
  const void* identity() const { return p_.get(); }

 private:
  Kind kind_ = Kind::kUndefined;
  bool flag_ = false;  // kString: Markup; kUndefined: unsafe attribute
  union {
    bool b_;
    int64_t i_ = 0;
    double f_;
  };
  std::shared_ptr<void> p_;  // string, ListData, DictData or Object, by kind
};

class Interpreter;

// Objects with attributes or a call operator: namespaces, macros, loops, bound methods.
class Object {
 public:
  virtual ~Object() = default;
  virtual std::string type_name() const = 0;  // Python's type(x).__name__
  virtual std::string repr() const { return "<" + type_name() + " object>"; }
  // Attribute lookup; nullopt-like undefined when missing.
  virtual Value attr(const std::string& name) const;
  virtual bool callable() const { return false; }
  virtual Value call(Interpreter& in, Args& pos, std::vector<std::pair<std::string, Value>>& kw);
  virtual int depth() const { return 0; }
};

// ----- Python semantics -----------------------------------------------------------------------
std::string type_name(const Value& v);  // "str", "int", "NoneType", "Undefined", ...
bool truthy(const Value& v);
std::string py_str(const Value& v);   // str(v); "" for undefined
std::string py_repr(const Value& v);  // repr(v)
std::string float_repr(double f);     // repr(float): shortest round-trip, Python's layout
bool py_equal(const Value& a, const Value& b);
// a < b as Python's sorted() needs it; TypeError if the types do not order.
bool py_less(const Value& a, const Value& b);
// a OP b for OP in == != < <= > >=, with Python's TypeError message for unordered types.
bool py_compare(const std::string& op, const Value& a, const Value& b);
int64_t py_len(const Value& v);  // TypeError if v has no len()
// The items of an iterable value (list, tuple, dict keys, string characters, undefined = []).
std::vector<Value> iterate(const Value& v);
bool py_contains(const Value& container, const Value& item);  // `item in container`
// TypeError "unhashable type" unless v can be a dict key or set member (tuples of hashables can).
void require_hashable(const Value& v);
// format % args: printf-style formatting of str (%s %r %d %i %f %e %g %x %o %c %%, flags, width,
// precision, %(name)s with a dict).
std::string printf_format(const std::string& format, const Value& args);
// Raises the error an undefined value raises when used (UndefinedError or SecurityError).
[[noreturn]] void raise_undefined(const Value& v);
// Calls raise_undefined if v is undefined.
inline void require_defined(const Value& v) {
  if (v.is_undefined()) raise_undefined(v);
}

struct JsonOptions {
  bool ensure_ascii = false;
  bool has_indent = false;
  std::string indent;  // the indent string when has_indent
  std::string item_sep = ", ", key_sep = ": ";
  bool sort_keys = false;
};
// json.dumps(v, ...) with Python's output; TypeError for what json cannot serialize.
std::string to_json(const Value& v, const JsonOptions& opt);
Value from_json(const nlohmann::ordered_json& j);

// ----- UTF-8 / Python str helpers ---------------------------------------------------------------
std::u32string utf8_decode(std::string_view s);
std::string utf8_encode(std::u32string_view s);
void utf8_append(std::string& out, char32_t c);
bool is_valid_utf8(std::string_view s);
size_t utf8_length(std::string_view s);
bool py_isspace(char32_t c);
char32_t py_lower(char32_t c);
char32_t py_upper(char32_t c);
char32_t py_title(char32_t c);
bool py_cased(char32_t c);
bool py_isalpha(char32_t c);
bool py_isdigit(char32_t c);
bool py_isalnum(char32_t c);
std::string str_lower(std::string_view s);
std::string str_upper(std::string_view s);
// str.strip/lstrip/rstrip with chars (nullptr = whitespace).
std::string str_strip(std::string_view s, const std::string* chars, bool left, bool right);
// str.split / str.rsplit (sep nullptr = runs of whitespace).
std::vector<std::string> str_split(std::string_view s, const std::string* sep, int64_t maxsplit, bool from_right);
std::string str_replace(std::string_view s, std::string_view old, std::string_view with, int64_t count);
std::string html_escape(std::string_view s);  // markupsafe.escape

}  // namespace quanta::tokenizer::jinja
