// The tree-walking interpreter for parsed chat templates, and its builtins.
//
// Scoping follows jinja2: a for-loop iteration gets a fresh frame (assignments in the body do
// not outlive the iteration, and the next iteration starts again from the outer values), if
// blocks share their enclosing frame, macros see their own frame and then the template's
// top-level variables as they are at call time. Attribute and item lookups follow jinja2's
// sandbox: `x.name` tries Python attributes first (so `d.items` is the method, not the key),
// `x[key]` tries the item first, and a missing one is an Undefined that raises only when used.
// Mutating methods (list.append, dict.pop, ...) are unsafe, as in ImmutableSandboxedEnvironment.
//
// Every render is bounded: evaluation steps, loop iterations, macro call depth and output size
// all have limits, so a hostile template ends in an error instead of a hang.
#pragma once

#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "quanta/tokenizer/jinja_parser.h"

namespace quanta::tokenizer::jinja {

using Kwargs = std::vector<std::pair<std::string, Value>>;

struct Limits {
  int64_t max_steps = 20'000'000;            // statements, calls, compared and copied elements
  int64_t max_loop_iterations = 1'000'000;   // over all loops of one render
  int max_call_depth = 100;                  // nested macro calls
  size_t max_output_bytes = 64u << 20;       // also the size limit of any one string or list
};

// transformers' TemplateNamespace: jinja2's Namespace that refuses names starting with "_".
class NamespaceObj : public Object {
 public:
  std::string type_name() const override { return "TemplateNamespace"; }
  std::string repr() const override;
  Value attr(const std::string& name) const override;
  void set(const std::string& name, Value v);
  void clear() { attrs_.clear(); }
  int depth() const override { return depth_; }

 private:
  std::vector<std::pair<std::string, Value>> attrs_;
  int depth_ = 1;
};

struct Frame;
using FramePtr = std::shared_ptr<Frame>;

class Interpreter {
 public:
  Interpreter(const Program& program, const Limits& limits, std::optional<std::tm> now);
  ~Interpreter();
  // Renders the program with these top-level variables (a dict value). Throws PositionedError.
  std::string render(const Value& context);

  // ----- used by the builtins -----
  Value getattr(const Value& obj, const std::string& name);
  Value getitem(const Value& obj, const Value& key);
  Value call(const Value& callee, Args& pos, Kwargs& kw);
  Value filter(const std::string& name, const Value& input, Args& pos, Kwargs& kw);
  bool test(const std::string& name, const Value& input, Args& pos, Kwargs& kw);
  void add_steps(int64_t n);
  void check_size(size_t bytes_or_items) const;
  const std::tm& now();
  void track_namespace(std::shared_ptr<NamespaceObj> ns) { namespaces_.push_back(std::move(ns)); }
  Value evaluate(const Node& n) { return eval(n); }

  // ----- used by macros -----
  std::vector<FramePtr>& scope() { return scope_; }
  std::string render_body(const std::vector<NodePtr>& body);
  const Program& program() const { return program_; }
  struct CallDepth {
    explicit CallDepth(Interpreter& in);
    ~CallDepth() { --in_.call_depth_; }
    Interpreter& in_;
  };

 private:
  enum class Flow { kNormal, kBreak, kContinue };
  static constexpr int kMaxEvalDepth = 1000;
  static constexpr std::ptrdiff_t kMaxStackBytes = 2 << 20;
  struct DepthGuard {
    explicit DepthGuard(Interpreter& in);
    ~DepthGuard() { --in_.eval_depth_; }
    Interpreter& in_;
  };
  Flow exec(const Node& n);
  Flow exec_inner(const Node& n);
  Flow exec_body(const std::vector<NodePtr>& body);
  Flow exec_for(const Node& n);
  Value eval(const Node& n);
  Value eval_inner(const Node& n);
  void eval_args(const std::vector<NodePtr>& items, Args& pos, Kwargs& kw);
  Value apply_filter_chain(const Node& chain, Value input);
  void assign(const Node& target, const Value& v);
  void set_var(const std::string& name, Value v);
  Value lookup(const std::string& name);
  void emit(const std::string& s);

  const Program& program_;
  Limits limits_;
  Budget budget_;
  std::optional<std::tm> now_;
  std::vector<FramePtr> scope_;
  std::string* out_ = nullptr;
  int64_t loop_iterations_ = 0;
  int call_depth_ = 0;
  int eval_depth_ = 0;
  char* stack_base_ = nullptr;  // the frame render() started from
  std::vector<std::shared_ptr<NamespaceObj>> namespaces_;
};

// a OP b for the arithmetic operators (+ - * / // % **), with Python's results and errors.
Value binary_op(Interpreter& in, const std::string& op, const Value& a, const Value& b);

// Builtins (jinja_builtins.cc). Each throws PyError on bad use.
Value apply_filter(Interpreter& in, const std::string& name, const Value& input, Args& pos, Kwargs& kw);
bool apply_test(Interpreter& in, const std::string& name, const Value& input, Args& pos, Kwargs& kw);
// x.name for str, list, tuple and dict values: a bound method, unsafe, or nullopt if none.
std::optional<Value> builtin_method(const Value& obj, const std::string& name);
// The globals transformers' environment provides (range, namespace, dict, raise_exception,
// strftime_now); undefined if name is none of them.
Value builtin_global(const std::string& name);
// Python's object_type_repr, used in undefined messages: "None", "dict object", ...
std::string object_type_repr(const Value& v);

}  // namespace quanta::tokenizer::jinja
