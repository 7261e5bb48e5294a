#include "quanta/tokenizer/jinja_interp.h"

#include <climits>
#include <cmath>

namespace quanta::tokenizer::jinja {

struct Frame {
  std::vector<std::pair<std::string, Value>> vars;
  Value* find(const std::string& name) {
    for (auto& kv : vars)
      if (kv.first == name) return &kv.second;
    return nullptr;
  }
  void set(const std::string& name, Value v) {
    if (Value* old = find(name)) *old = std::move(v);
    else vars.emplace_back(name, std::move(v));
  }
};

namespace {

[[noreturn]] void limit_error(const std::string& what) { throw PyError("LimitError", what); }

bool mentions_name(const std::vector<NodePtr>& body, const std::string& name);
bool mentions_name(const Node* n, const std::string& name) {
  if (!n) return false;
  if (n->kind == NodeKind::kName && n->name == name) return true;
  if (n->kind == NodeKind::kMacro) return false;  // a nested macro has its own scope
  if (mentions_name(n->x.get(), name) || mentions_name(n->y.get(), name) || mentions_name(n->z.get(), name))
    return true;
  return mentions_name(n->items, name) || mentions_name(n->body, name) || mentions_name(n->orelse, name);
}
bool mentions_name(const std::vector<NodePtr>& body, const std::string& name) {
  for (const auto& c : body)
    if (mentions_name(c.get(), name)) return true;
  return false;
}

// A macro (or the `caller` of a call block): parameters, defaults and a body that renders in a
// new frame on top of the frames it was defined in.
class MacroObj : public Object {
 public:
  MacroObj(const Node& def, std::string name, const std::vector<FramePtr>& closure)
      : def_(def), name_(std::move(name)) {
    for (const auto& f : closure) closure_.push_back(f);
    varargs_ = mentions_name(def.body, "varargs");
    kwargs_ = mentions_name(def.body, "kwargs");
    caller_ = mentions_name(def.body, "caller");
  }
  std::string type_name() const override { return "Macro"; }
  std::string repr() const override { return "<Macro '" + name_ + "'>"; }
  bool callable() const override { return true; }
  Value attr(const std::string& name) const override {
    if (name == "name") return Value::string(name_);
    if (name == "arguments") {
      std::vector<Value> a;
      for (const auto& s : def_.strs) a.push_back(Value::string(s));
      return Value::list(std::move(a), Seq::kTuple);
    }
    return Object::attr(name);
  }

  Value call(Interpreter& in, Args& pos, Kwargs& kw) override {
    Interpreter::CallDepth depth(in);
    const auto& params = def_.strs;
    if (pos.size() > params.size() && !varargs_)
      throw_type_error("macro '" + name_ + "' takes not more than " + std::to_string(params.size()) + " argument(s)");
    auto frame = std::make_shared<Frame>();
    std::vector<FramePtr> saved = std::move(in.scope());
    std::vector<FramePtr>& scope = in.scope();
    scope.clear();
    for (const auto& w : closure_)
      if (auto f = w.lock()) scope.push_back(std::move(f));
    scope.push_back(frame);
    struct Restore {
      std::vector<FramePtr>& scope;
      std::vector<FramePtr> saved;
      ~Restore() { scope = std::move(saved); }
    } restore{scope, std::move(saved)};

    Kwargs rest = kw;
    for (size_t i = 0; i < params.size(); ++i) {
      if (i < pos.size()) {
        frame->set(params[i], pos[i]);
        continue;
      }
      bool found = false;
      for (auto it = rest.begin(); it != rest.end(); ++it)
        if (it->first == params[i]) {
          frame->set(params[i], it->second);
          rest.erase(it);
          found = true;
          break;
        }
      if (found) continue;
      // Defaults are evaluated at call time, in the macro's frame (they may use earlier parameters).
      if (def_.items[i]) {
        frame->set(params[i], in.evaluate(*def_.items[i]));
      } else {
        frame->set(params[i], Value::undefined("parameter '" + params[i] + "' was not provided"));
      }
    }
    if (caller_) {  // only a macro that uses `caller` takes it out of the keyword arguments
      Value caller = Value::undefined("No caller defined");
      for (auto it = rest.begin(); it != rest.end(); ++it)
        if (it->first == "caller") {
          caller = it->second;
          rest.erase(it);
          break;
        }
      frame->set("caller", caller);
    }
    if (kwargs_) {
      std::vector<std::pair<Value, Value>> d;
      for (auto& [k, v] : rest) d.emplace_back(Value::string(k), v);
      frame->set("kwargs", Value::dict(std::move(d)));
    } else if (!rest.empty()) {
      for (const auto& kv : rest)
        if (kv.first == "caller")
          throw_type_error("macro '" + name_ + "' was invoked with two values for the special caller argument. This is "
                           "most likely a bug.");
      throw_type_error("macro '" + name_ + "' takes no keyword argument '" + rest.front().first + "'");
    }
    if (varargs_) {
      std::vector<Value> extra;
      for (size_t i = params.size(); i < pos.size(); ++i) extra.push_back(pos[i]);
      frame->set("varargs", Value::list(std::move(extra), Seq::kTuple));
    }
    return Value::string(in.render_body(def_.body));
  }

 private:
  const Node& def_;
  std::string name_;
  std::vector<std::weak_ptr<Frame>> closure_;
  bool varargs_ = false, kwargs_ = false, caller_ = false;
};

// The `loop` variable of a for loop.
class LoopObj : public Object {
 public:
  // The loop object can outlive its loop (`{% set ns.l = loop %}`), so it shares the items.
  LoopObj(std::shared_ptr<const std::vector<Value>> items, size_t index) : items_(std::move(items)), i_(index) {}
  std::string type_name() const override { return "LoopContext"; }
  std::string repr() const override {
    return "<LoopContext " + std::to_string(i_ + 1) + "/" + std::to_string(items_->size()) + ">";
  }
  Value attr(const std::string& name) const override {
    int64_t n = static_cast<int64_t>(items_->size()), i = static_cast<int64_t>(i_);
    if (name == "index") return Value::integer(i + 1);
    if (name == "index0") return Value::integer(i);
    if (name == "revindex") return Value::integer(n - i);
    if (name == "revindex0") return Value::integer(n - i - 1);
    if (name == "first") return Value::boolean(i == 0);
    if (name == "last") return Value::boolean(i == n - 1);
    if (name == "length") return Value::integer(n);
    if (name == "depth") return Value::integer(1);
    if (name == "depth0") return Value::integer(0);
    if (name == "previtem") return i > 0 ? (*items_)[i - 1] : Value::undefined("there is no previous item");
    if (name == "nextitem") return i + 1 < n ? (*items_)[i + 1] : Value::undefined("there is no next item");
    if (name == "cycle") return Value::object(std::make_shared<Cycle>(i_));
    return Object::attr(name);
  }

 private:
  struct Cycle : Object {
    explicit Cycle(size_t i) : i(i) {}
    std::string type_name() const override { return "method"; }
    bool callable() const override { return true; }
    Value call(Interpreter&, Args& pos, Kwargs&) override {
      if (pos.empty()) throw_type_error("no items for cycling given");
      return pos[i % pos.size()];
    }
    size_t i;
  };
  std::shared_ptr<const std::vector<Value>> items_;
  size_t i_;
};

}  // namespace

Interpreter::CallDepth::CallDepth(Interpreter& in) : in_(in) {
  if (++in_.call_depth_ > in_.limits_.max_call_depth) {
    --in_.call_depth_;
    limit_error("macro calls nested more than " + std::to_string(in_.limits_.max_call_depth) + " deep");
  }
}

Interpreter::DepthGuard::DepthGuard(Interpreter& in) : in_(in) {
  // Macro recursion times statement and expression nesting is what the C++ stack holds; both
  // the depth and the stack actually used (frames are larger in sanitizer builds) are bounded.
  auto* here = static_cast<char*>(__builtin_frame_address(0));
  bool deep = ++in_.eval_depth_ > kMaxEvalDepth;
  if (deep || (in_.stack_base_ && in_.stack_base_ - here > kMaxStackBytes)) {
    --in_.eval_depth_;
    limit_error(deep ? "template nested more than " + std::to_string(kMaxEvalDepth) + " calls and expressions deep"
                     : "template nested too deeply for the stack (more than " + std::to_string(kMaxStackBytes >> 10) +
                           " KiB)");
  }
}

Interpreter::Interpreter(const Program& program, const Limits& limits, std::optional<std::tm> now)
    : program_(program), limits_(limits), now_(now) {
  budget_.max_steps = limits.max_steps;
  budget_.max_bytes = limits.max_output_bytes;
  budget_.max_items = std::max<size_t>(limits.max_output_bytes / 16, 1024);
}

Interpreter::~Interpreter() {
  // Namespaces are the only mutable values, so only they can form reference cycles
  // (ns.x = ns); emptying them frees everything the render built.
  for (auto& ns : namespaces_) ns->clear();
}

std::string Interpreter::render(const Value& context) {
  BudgetScope budget(budget_);
  stack_base_ = static_cast<char*>(__builtin_frame_address(0));
  auto root = std::make_shared<Frame>();
  if (context.is_dict())
    for (const auto& [k, v] : context.dict().items)
      if (k.is_string()) root->set(k.str(), v);
  scope_ = {root};
  std::string out;
  out_ = &out;
  exec_body(program_.body);
  out_ = nullptr;
  scope_.clear();
  return out;
}

std::string Interpreter::render_body(const std::vector<NodePtr>& body) {
  std::string buf;
  std::string* saved = out_;
  out_ = &buf;
  struct Restore {
    std::string*& out;
    std::string* saved;
    ~Restore() { out = saved; }
  } restore{out_, saved};
  exec_body(body);
  return buf;
}

void Interpreter::emit(const std::string& s) {
  if (out_->size() + s.size() > limits_.max_output_bytes)
    limit_error("output larger than " + std::to_string(limits_.max_output_bytes) + " bytes");
  *out_ += s;
}

void Interpreter::add_steps(int64_t n) { charge(n); }

void Interpreter::check_size(size_t n) const { check_bytes(n); }

const std::tm& Interpreter::now() {
  if (!now_) {
    std::time_t t = std::time(nullptr);
    std::tm tm{};
    localtime_r(&t, &tm);
    now_ = tm;
  }
  return *now_;
}

// ----- variables --------------------------------------------------------------------------------------

// Innermost frame first, then the template's top level (render arguments and top-level sets),
// then transformers' globals.
Value Interpreter::lookup(const std::string& name) {
  for (auto it = scope_.rbegin(); it != scope_.rend(); ++it)
    if (Value* v = (*it)->find(name)) return *v;
  Value g = builtin_global(name);
  if (!g.is_undefined()) return g;
  return Value::undefined("'" + name + "' is undefined");
}

void Interpreter::set_var(const std::string& name, Value v) { scope_.back()->set(name, std::move(v)); }

// {% set %} targets: a name (in the innermost frame, so a set in a loop body ends with the
// iteration), a tuple of names (Python unpacking), or ns.attr on a namespace (which outlives loops).
void Interpreter::assign(const Node& target, const Value& v) {
  if (target.kind == NodeKind::kName) {
    set_var(target.name, v);
  } else if (target.kind == NodeKind::kTuple) {
    std::vector<Value> items = iterate(v);
    size_t n = target.items.size();
    if (items.size() < n)
      throw PyError("ValueError", "not enough values to unpack (expected " + std::to_string(n) + ", got " +
                                      std::to_string(items.size()) + ")");
    if (items.size() > n) throw PyError("ValueError", "too many values to unpack (expected " + std::to_string(n) + ")");
    for (size_t i = 0; i < n; ++i) set_var(target.items[i]->name, items[i]);
  } else {  // namespace attribute
    Value ns = lookup(target.x->name);
    auto* obj = ns.is_object() ? dynamic_cast<NamespaceObj*>(&ns.object()) : nullptr;
    if (!obj) throw PyError("TemplateRuntimeError", "cannot assign attribute on non-namespace object");
    obj->set(target.name, v);
  }
}

// ----- statements -------------------------------------------------------------------------------------

Interpreter::Flow Interpreter::exec_body(const std::vector<NodePtr>& body) {
  for (const auto& n : body) {
    Flow f = exec(*n);
    if (f != Flow::kNormal) return f;
  }
  return Flow::kNormal;
}

Interpreter::Flow Interpreter::exec(const Node& n) {
  DepthGuard guard(*this);
  try {
    return exec_inner(n);
  } catch (PyError& e) {
    throw PositionedError(std::move(e), n.offset);
  }
}

Interpreter::Flow Interpreter::exec_inner(const Node& n) {
  add_steps(1);
  switch (n.kind) {
    case NodeKind::kText: emit(n.name); return Flow::kNormal;
    case NodeKind::kOutput: emit(py_str(eval(*n.x))); return Flow::kNormal;
    case NodeKind::kIf: return exec_body(truthy(eval(*n.x)) ? n.body : n.orelse);
    case NodeKind::kFor: return exec_for(n);
    case NodeKind::kSet: assign(*n.x, eval(*n.y)); return Flow::kNormal;
    case NodeKind::kSetBlock: {
      Value v = Value::string(render_body(n.body));
      if (n.y) v = apply_filter_chain(*n.y, v);
      assign(*n.x, v);
      return Flow::kNormal;
    }
    case NodeKind::kMacro: set_var(n.name, Value::object(std::make_shared<MacroObj>(n, n.name, scope_))); return Flow::kNormal;
    case NodeKind::kCallBlock: {
      auto caller = std::make_shared<MacroObj>(n, "caller", scope_);
      const Node& call = *n.x;
      Value callee = eval(*call.x);
      Args pos;
      Kwargs kw;
      eval_args(call.items, pos, kw);
      kw.emplace_back("caller", Value::object(caller));
      emit(py_str(this->call(callee, pos, kw)));
      return Flow::kNormal;
    }
    case NodeKind::kFilterBlock: emit(py_str(apply_filter_chain(*n.y, Value::string(render_body(n.body))))); return Flow::kNormal;
    case NodeKind::kWith: {
      std::vector<Value> values;
      for (const auto& e : n.items) values.push_back(eval(*e));
      scope_.push_back(std::make_shared<Frame>());
      for (size_t i = 0; i < values.size(); ++i) set_var(n.strs[i], values[i]);
      Flow f;
      try {
        f = exec_body(n.body);
      } catch (...) {
        scope_.pop_back();
        throw;
      }
      scope_.pop_back();
      return f;
    }
    case NodeKind::kGeneration: return exec_body(n.body);
    case NodeKind::kBreak: return Flow::kBreak;
    case NodeKind::kContinue: return Flow::kContinue;
    default: throw PyError("TemplateRuntimeError", "unexpected statement");
  }
}

// jinja2's for loop: the iterable is evaluated once; `if` filters items before the loop, so
// loop.length and loop.last count only the kept ones; `else` runs when nothing was iterated
// (not after a normal end, as in Python); each iteration gets a fresh frame.
Interpreter::Flow Interpreter::exec_for(const Node& n) {
  std::vector<Value> items = iterate(eval(*n.y));
  struct PopFrame {
    std::vector<FramePtr>& scope;
    size_t size;
    ~PopFrame() { scope.resize(size); }
  } pop{scope_, scope_.size()};
  if (n.z) {  // `for x in xs if cond`: filter first, so loop.length counts what remains
    std::vector<Value> kept;
    for (const Value& item : items) {
      scope_.push_back(std::make_shared<Frame>());
      assign(*n.x, item);
      bool keep = truthy(eval(*n.z));
      scope_.pop_back();
      if (keep) kept.push_back(item);
    }
    items = std::move(kept);
  }
  if (items.empty()) return exec_body(n.orelse);
  auto shared = std::make_shared<const std::vector<Value>>(std::move(items));
  const std::vector<Value>& all = *shared;
  for (size_t i = 0; i < all.size(); ++i) {
    if (++loop_iterations_ > limits_.max_loop_iterations)
      limit_error("template ran more than " + std::to_string(limits_.max_loop_iterations) + " loop iterations");
    scope_.push_back(std::make_shared<Frame>());
    scope_.back()->set("loop", Value::object(std::make_shared<LoopObj>(shared, i)));
    assign(*n.x, all[i]);
    Flow f = exec_body(n.body);
    scope_.pop_back();
    if (f == Flow::kBreak) break;
  }
  return Flow::kNormal;
}

// ----- expressions -------------------------------------------------------------------------------------

Value Interpreter::eval(const Node& n) {
  DepthGuard guard(*this);
  try {
    return eval_inner(n);
  } catch (PyError& e) {
    throw PositionedError(std::move(e), n.offset);
  }
}

void Interpreter::eval_args(const std::vector<NodePtr>& items, Args& pos, Kwargs& kw) {
  for (const auto& a : items) {
    switch (a->kind) {
      case NodeKind::kKwarg: kw.emplace_back(a->name, eval(*a->x)); break;
      case NodeKind::kStarArgs:
        for (Value& v : iterate(eval(*a->x))) pos.push_back(std::move(v));
        break;
      case NodeKind::kStarKwargs: {
        Value d = eval(*a->x);
        if (!d.is_dict()) throw_type_error("argument after ** must be a mapping, not " + type_name(d));
        for (const auto& [k, v] : d.dict().items) {
          if (!k.is_string()) throw_type_error("keywords must be strings");
          kw.emplace_back(k.str(), v);
        }
        break;
      }
      default: pos.push_back(eval(*a)); break;
    }
  }
}

Value Interpreter::apply_filter_chain(const Node& chain, Value input) {
  // A chain is nested Filter nodes whose innermost input is null (the block's text).
  if (chain.x) input = apply_filter_chain(*chain.x, std::move(input));
  Args pos;
  Kwargs kw;
  eval_args(chain.items, pos, kw);
  if (chain.flag) throw PyError("TemplateRuntimeError", "No filter named '" + chain.name + "' found.");
  return filter(chain.name, input, pos, kw);
}

Value Interpreter::call(const Value& callee, Args& pos, Kwargs& kw) {
  add_steps(1);
  if (callee.is_undefined()) raise_undefined(callee);
  if (!callee.is_object() || !callee.object().callable()) throw_type_error("'" + type_name(callee) + "' object is not callable");
  return callee.object().call(*this, pos, kw);
}

Value Interpreter::filter(const std::string& name, const Value& input, Args& pos, Kwargs& kw) {
  add_steps(1);
  return apply_filter(*this, name, input, pos, kw);
}

bool Interpreter::test(const std::string& name, const Value& input, Args& pos, Kwargs& kw) {
  return apply_test(*this, name, input, pos, kw);
}

// jinja2.utils.object_type_repr, which names the object in "has no attribute" messages.
std::string object_type_repr(const Value& v) {
  if (v.is_none()) return "None";
  if (v.is_markup()) return "markupsafe.Markup object";
  if (v.is_object()) {
    std::string t = v.object().type_name();
    if (t == "TemplateNamespace") return "transformers.utils.chat_template_utils.TemplateNamespace object";
    if (t == "Macro" || t == "LoopContext") return "jinja2.runtime." + t + " object";
    return t + " object";
  }
  return type_name(v) + " object";
}

namespace {
Value missing_attr(const Value& obj, const std::string& name) {
  return Value::undefined("'" + object_type_repr(obj) + "' has no attribute '" + name + "'");
}
Value missing_item(const Value& obj, const Value& key) {
  if (key.is_string()) return missing_attr(obj, key.str());
  return Value::undefined(object_type_repr(obj) + " has no element " + py_repr(key));
}

int64_t normalize_index(int64_t i, int64_t n) { return i < 0 ? i + n : i; }
}  // namespace

// x.name, as jinja2's sandbox does it: a Python attribute first (methods of str, list and dict,
// or an object's attribute), then the item; a missing one is an Undefined that remembers why.
Value Interpreter::getattr(const Value& obj, const std::string& name) {
  if (obj.is_undefined()) raise_undefined(obj);
  if (obj.is_object()) return obj.object().attr(name);
  if (std::optional<Value> m = builtin_method(obj, name)) return *m;
  if (obj.is_dict()) {
    if (const Value* v = obj.dict().find(Value::string(name))) return *v;
  }
  return missing_attr(obj, name);
}

// x[key]: the item first (negative indexes count from the end), then a Python attribute for a
// string key (so `d['items']` is the key when there is one, else the method).
Value Interpreter::getitem(const Value& obj, const Value& key) {
  if (obj.is_undefined()) raise_undefined(obj);
  if (obj.is_dict()) {
    if (!key.is_list() && !key.is_dict())
      if (const Value* v = obj.dict().find(key)) return *v;
  } else if ((obj.is_list() && obj.seq() != Seq::kGenerator && obj.seq() != Seq::kDictItems &&
              obj.seq() != Seq::kDictKeys && obj.seq() != Seq::kDictValues) ||
             obj.is_string()) {
    if (key.is_int() || key.is_bool()) {
      if (obj.is_string()) {
        std::u32string u = utf8_decode(obj.str());
        int64_t i = normalize_index(key.as_int(), static_cast<int64_t>(u.size()));
        if (i >= 0 && i < static_cast<int64_t>(u.size())) return Value::string(utf8_encode(u.substr(i, 1)), obj.is_markup());
      } else {
        int64_t n = static_cast<int64_t>(obj.items().size());
        int64_t i = normalize_index(key.as_int(), n);
        if (i >= 0 && i < n) return obj.items()[i];
      }
      return missing_item(obj, key);
    }
  } else if (obj.is_object() && key.is_string()) {
    return obj.object().attr(key.str());
  }
  if (key.is_string())
    if (std::optional<Value> m = builtin_method(obj, key.str())) return *m;
  return missing_item(obj, key);
}

namespace {

int64_t checked(bool overflow, int64_t v) {
  if (overflow) throw PyError("OverflowError", "integer overflow (templates here use 64-bit integers)");
  return v;
}

// x[start:stop:step] on lists, tuples and strings (by code point), with Python's clamping.
Value slice_value(const Value& obj, const Value* parts[3]) {
  int64_t idx[3] = {0, 0, 1};
  bool given[3];
  for (int k = 0; k < 3; ++k) {
    given[k] = parts[k] && !parts[k]->is_none();
    if (given[k]) {
      if (!parts[k]->is_int() && !parts[k]->is_bool())
        throw_type_error("slice indices must be integers or None or have an __index__ method");
      idx[k] = parts[k]->as_int();
    }
  }
  int64_t step = given[2] ? idx[2] : 1;
  if (step == 0) throw PyError("ValueError", "slice step cannot be zero");
  auto pick = [&](int64_t n, auto&& take) {
    // CPython's PySlice_AdjustIndices.
    int64_t start, stop;
    if (!given[0]) start = step < 0 ? n - 1 : 0;
    else {
      start = idx[0];
      if (start < 0) start = std::max<int64_t>(start + n, step < 0 ? -1 : 0);
      else if (start >= n) start = step < 0 ? n - 1 : n;
    }
    if (!given[1]) stop = step < 0 ? -1 : n;
    else {
      stop = idx[1];
      if (stop < 0) stop = std::max<int64_t>(stop + n, step < 0 ? -1 : 0);
      else if (stop >= n) stop = step < 0 ? n - 1 : n;
    }
    if (step > 0)
      for (int64_t i = start; i < stop; i += step) take(i);
    else
      for (int64_t i = start; i > stop; i += step) take(i);
  };
  if (obj.is_string()) {
    std::u32string u = utf8_decode(obj.str()), r;
    pick(static_cast<int64_t>(u.size()), [&](int64_t i) { r += u[i]; });
    return Value::string(utf8_encode(r), obj.is_markup());
  }
  if (obj.is_list() && (obj.seq() == Seq::kList || obj.seq() == Seq::kTuple)) {
    std::vector<Value> r;
    pick(static_cast<int64_t>(obj.items().size()), [&](int64_t i) { r.push_back(obj.items()[i]); });
    return Value::list(std::move(r), obj.seq());
  }
  if (obj.is_undefined()) raise_undefined(obj);
  auto rep = [&](int k) { return given[k] ? std::to_string(idx[k]) : std::string("None"); };
  return Value::undefined(object_type_repr(obj) + " has no element slice(" + rep(0) + ", " + rep(1) + ", " + rep(2) + ")");
}

}  // namespace

// Python's arithmetic: int op int stays int (with an overflow error instead of big integers),
// `/` is always float, `//` and `%` floor toward negative infinity, + concatenates strings,
// lists and tuples of the same kind, * repeats them. Size limits are checked before building.
Value binary_op(Interpreter& in, const std::string& op, const Value& a, const Value& b) {
  if (a.is_undefined()) raise_undefined(a);
  // str % x runs before x's own operator, and an Undefined there is only an error if used.
  if (op == "%" && a.is_string()) return Value::string(printf_format(a.str(), b), a.is_markup());
  if (b.is_undefined()) raise_undefined(b);
  auto unsupported = [&]() -> Value {
    throw_type_error("unsupported operand type(s) for " + (op == "**" ? std::string("** or pow()") : op) + ": '" +
                     type_name(a) + "' and '" + type_name(b) + "'");
  };
  bool nums = a.is_number() && b.is_number();
  bool ints = nums && !a.is_float() && !b.is_float();
  if (op == "+") {
    if (ints) {
      int64_t r;
      bool overflow = __builtin_add_overflow(a.as_int(), b.as_int(), &r);
      return Value::integer(checked(overflow, r));
    }
    if (nums) return Value::number(a.as_float() + b.as_float());
    if (a.is_string() && b.is_string()) {
      in.check_size(a.str().size() + b.str().size());
      in.add_steps(static_cast<int64_t>((a.str().size() + b.str().size()) / 64));
      // Markup + str escapes the plain side, as markupsafe does.
      if (a.is_markup() && !b.is_markup()) return Value::string(a.str() + html_escape(b.str()), true);
      if (b.is_markup() && !a.is_markup()) return Value::string(html_escape(a.str()) + b.str(), true);
      return Value::string(a.str() + b.str(), a.is_markup());
    }
    if (a.is_string() && !a.is_markup()) throw_type_error("can only concatenate str (not \"" + type_name(b) + "\") to str");
    if (a.is_list() && (a.seq() == Seq::kList || a.seq() == Seq::kTuple)) {
      if (!b.is_list() || b.seq() != a.seq())
        throw_type_error("can only concatenate " + type_name(a) + " (not \"" + type_name(b) + "\") to " + type_name(a));
      check_items(a.items().size() + b.items().size());
      in.add_steps(static_cast<int64_t>(a.items().size() + b.items().size()));
      std::vector<Value> r = a.items();
      r.insert(r.end(), b.items().begin(), b.items().end());
      return Value::list(std::move(r), a.seq());
    }
    return unsupported();
  }
  if (op == "-") {
    if (ints) {
      int64_t r;
      bool overflow = __builtin_sub_overflow(a.as_int(), b.as_int(), &r);
      return Value::integer(checked(overflow, r));
    }
    if (nums) return Value::number(a.as_float() - b.as_float());
    return unsupported();
  }
  if (op == "*") {
    if (ints) {
      int64_t r;
      bool overflow = __builtin_mul_overflow(a.as_int(), b.as_int(), &r);
      return Value::integer(checked(overflow, r));
    }
    if (nums) return Value::number(a.as_float() * b.as_float());
    const Value* seq = (a.is_string() || a.is_list()) ? &a : (b.is_string() || b.is_list()) ? &b : nullptr;
    const Value* count = seq == &a ? &b : &a;
    if (seq && (count->is_int() || count->is_bool()) &&
        (seq->is_string() || seq->seq() == Seq::kList || seq->seq() == Seq::kTuple)) {
      int64_t n = std::max<int64_t>(0, count->as_int());
      size_t unit = seq->is_string() ? seq->str().size() : seq->items().size();
      size_t total = (unit && static_cast<uint64_t>(n) > (1ull << 40) / unit) ? SIZE_MAX : unit * n;
      if (seq->is_string()) check_bytes(total);
      else check_items(total);
      in.add_steps(static_cast<int64_t>(unit * n / 8));
      if (seq->is_string()) {
        std::string r;
        r.reserve(unit * n);
        for (int64_t i = 0; i < n; ++i) r += seq->str();
        return Value::string(std::move(r), seq->is_markup());
      }
      std::vector<Value> r;
      for (int64_t i = 0; i < n; ++i) r.insert(r.end(), seq->items().begin(), seq->items().end());
      return Value::list(std::move(r), seq->seq());
    }
    // Markup's __mul__ and __rmul__ (markupsafe 3) pass any count to str.__mul__, which wants an index.
    if (a.is_markup() || b.is_markup()) {
      const Value& other = a.is_markup() ? b : a;
      if (!other.is_int() && !other.is_bool())
        throw_type_error("'" + type_name(other) + "' object cannot be interpreted as an integer");
    }
    if (seq && !count->is_int()) throw_type_error("can't multiply sequence by non-int of type '" + type_name(*count) + "'");
    return unsupported();
  }
  if (op == "/") {
    if (!nums) return unsupported();
    if (b.as_float() == 0) throw PyError("ZeroDivisionError", ints ? "division by zero" : "float division by zero");
    return Value::number(a.as_float() / b.as_float());
  }
  if (op == "//" || op == "%") {
    if (a.is_string() && op == "%") return Value::string(printf_format(a.str(), b), a.is_markup());
    if (!nums) return unsupported();
    if (ints) {
      int64_t x = a.as_int(), y = b.as_int();
      if (y == 0) throw PyError("ZeroDivisionError", op == "//" ? "integer division or modulo by zero" : "integer modulo by zero");
      if (x == INT64_MIN && y == -1) checked(true, 0);
      int64_t q = x / y, r = x % y;
      if (r != 0 && ((r < 0) != (y < 0))) --q, r += y;  // Python floors
      return Value::integer(op == "//" ? q : r);
    }
    // CPython's float_divmod, signed zeros included.
    double x = a.as_float(), y = b.as_float();
    if (y == 0) throw PyError("ZeroDivisionError", op == "//" ? "float floor division by zero" : "float modulo");
    double m = std::fmod(x, y);
    double div = (x - m) / y;
    if (m != 0) {
      if ((y < 0) != (m < 0)) m += y, div -= 1.0;
    } else {
      m = std::copysign(0.0, y);
    }
    if (op == "%") return Value::number(m);
    double floordiv;
    if (div != 0) {
      floordiv = std::floor(div);
      if (div - floordiv > 0.5) floordiv += 1.0;
    } else {
      floordiv = std::copysign(0.0, x / y);
    }
    return Value::number(floordiv);
  }
  if (op == "**") {
    if (ints && b.as_int() >= 0) {
      int64_t base = a.as_int(), e = b.as_int(), r = 1;
      while (e > 0) {
        if (e & 1) checked(__builtin_mul_overflow(r, base, &r), 0);
        e >>= 1;
        if (e) checked(__builtin_mul_overflow(base, base, &base), 0);
      }
      return Value::integer(r);
    }
    if (nums) {
      if (a.as_float() == 0 && b.as_float() < 0)
        throw PyError("ZeroDivisionError", "0.0 cannot be raised to a negative power");
      return Value::number(std::pow(a.as_float(), b.as_float()));
    }
    return unsupported();
  }
  throw PyError("TemplateRuntimeError", "unknown operator " + op);
}

namespace {
bool compare(const std::string& op, const Value& a, const Value& b) {
  if (op == "in") return py_contains(b, a);
  if (op == "notin") return !py_contains(b, a);
  return py_compare(op, a, b);
}
}  // namespace

Value Interpreter::eval_inner(const Node& n) {
  switch (n.kind) {
    case NodeKind::kConst: return n.value;
    case NodeKind::kName: return lookup(n.name);
    case NodeKind::kList:
    case NodeKind::kTuple: {
      std::vector<Value> items;
      items.reserve(n.items.size());
      for (const auto& e : n.items) items.push_back(eval(*e));
      return Value::list(std::move(items), n.kind == NodeKind::kTuple ? Seq::kTuple : Seq::kList);
    }
    case NodeKind::kDict: {
      std::vector<std::pair<Value, Value>> items;
      for (size_t i = 0; i + 1 < n.items.size(); i += 2) {
        Value k = eval(*n.items[i]);
        require_hashable(k);
        items.emplace_back(std::move(k), eval(*n.items[i + 1]));
      }
      return Value::dict(std::move(items));
    }
    case NodeKind::kGetAttr: return getattr(eval(*n.x), n.name);
    case NodeKind::kGetItem: return getitem(eval(*n.x), eval(*n.y));
    case NodeKind::kSlice: {
      Value obj = eval(*n.x);
      Value vals[3];
      const Value* parts[3] = {nullptr, nullptr, nullptr};
      for (int k = 0; k < 3; ++k)
        if (n.items[k]) vals[k] = eval(*n.items[k]), parts[k] = &vals[k];
      return slice_value(obj, parts);
    }
    case NodeKind::kCall: {
      Value callee = eval(*n.x);
      Args pos;
      Kwargs kw;
      eval_args(n.items, pos, kw);
      return call(callee, pos, kw);
    }
    case NodeKind::kFilter: {
      Value input = eval(*n.x);
      Args pos;
      Kwargs kw;
      eval_args(n.items, pos, kw);
      if (n.flag) throw PyError("TemplateRuntimeError", "No filter named '" + n.name + "' found.");
      return filter(n.name, input, pos, kw);
    }
    case NodeKind::kTest: {
      Value input = eval(*n.x);
      Args pos;
      Kwargs kw;
      eval_args(n.items, pos, kw);
      if (n.flag) throw PyError("TemplateRuntimeError", "No test named '" + n.name + "' found.");
      return Value::boolean(test(n.name, input, pos, kw));
    }
    case NodeKind::kNot: return Value::boolean(!truthy(eval(*n.x)));
    case NodeKind::kNeg:
    case NodeKind::kPos: {
      Value v = eval(*n.x);
      if (v.is_undefined()) raise_undefined(v);
      bool neg = n.kind == NodeKind::kNeg;
      if (v.is_float()) return Value::number(neg ? -v.as_float() : v.as_float());
      if (v.is_number()) {
        if (neg && v.as_int() == INT64_MIN) checked(true, 0);
        return Value::integer(neg ? -v.as_int() : v.as_int());
      }
      throw_type_error(std::string("bad operand type for unary ") + (neg ? "-" : "+") + ": '" + type_name(v) + "'");
    }
    case NodeKind::kBinary: {
      Value a = eval(*n.x);
      Value b = eval(*n.y);
      return binary_op(*this, n.name, a, b);
    }
    case NodeKind::kConcat: {
      std::string s;
      for (const auto& e : n.items) {
        s += py_str(eval(*e));
        check_size(s.size());
      }
      add_steps(static_cast<int64_t>(s.size() / 64));
      return Value::string(std::move(s));
    }
    case NodeKind::kCompare: {
      Value left = eval(*n.x);
      for (size_t i = 0; i < n.items.size(); ++i) {
        Value right = eval(*n.items[i]);
        if (!compare(n.strs[i], left, right)) return Value::boolean(false);
        left = std::move(right);
      }
      return Value::boolean(true);
    }
    // and / or return an operand, not a bool, as in Python.
    case NodeKind::kAnd: {
      Value l = eval(*n.x);
      return truthy(l) ? eval(*n.y) : l;
    }
    case NodeKind::kOr: {
      Value l = eval(*n.x);
      return truthy(l) ? l : eval(*n.y);
    }
    // `a if c` without else is Undefined when c is false (printing it prints nothing).
    case NodeKind::kCondExpr:
      if (truthy(eval(*n.y))) return eval(*n.x);
      if (n.z) return eval(*n.z);
      {
        auto [line, col] = program_.position(n.offset);
        (void)col;
        return Value::undefined("the inline if-expression on line " + std::to_string(line) +
                                " evaluated to false and no else section was defined.");
      }
    default: throw PyError("TemplateRuntimeError", "unexpected expression");
  }
}

}  // namespace quanta::tokenizer::jinja
