// Lexer and parser for the Jinja2 subset that chat templates use.
//
// The lexer reproduces jinja2's whitespace handling exactly as transformers configures it:
// trim_blocks (drop the first newline after a block or comment tag), lstrip_blocks (drop the
// spaces and tabs before a block or comment tag that starts its line), the `-` and `+`
// modifiers, newline normalisation and the removal of one trailing newline of the source.
// The parser builds a tree of Nodes; a Program owns the tree and the source (for positions).
//
// Non-goals: template inheritance, include/import (chat templates have no files), line
// statements, custom delimiters, recursive for loops.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "quanta/tokenizer/jinja_value.h"

namespace quanta::tokenizer::jinja {

enum class NodeKind : uint8_t {
  // Statements
  kText,         // name = literal text
  kOutput,       // x = expression
  kIf,           // x = condition, body, orelse
  kFor,          // x = target, y = iterable, z = filter (optional), body, orelse
  kSet,          // x = target (Name, Tuple of Names, or GetAttr on a Name), y = value
  kSetBlock,     // x = target, y = filter chain on a null input (optional), body
  kMacro,        // name, strs = parameters, items = defaults (null where none), body
  kCallBlock,    // x = call, strs/items = caller's parameters/defaults, body
  kFilterBlock,  // y = filter chain on a null input, body
  kWith,         // strs = names, items = values, body
  kGeneration,   // body (transformers' {% generation %} block: renders its body)
  kBreak,
  kContinue,
  // Expressions
  kConst,     // value
  kName,      // name
  kList,      // items
  kTuple,     // items
  kDict,      // items = key0, value0, key1, value1, ...
  kGetAttr,   // x = object, name = attribute
  kGetItem,   // x = object, y = key
  kSlice,     // x = object, items = start, stop, step (each may be null)
  kCall,      // x = callee, items = arguments (kKwarg / kStarArgs / kStarKwargs / positional)
  kKwarg,     // name = keyword, x = value
  kStarArgs,  // x
  kStarKwargs,  // x
  kFilter,    // x = input (null in filter blocks), name, items = arguments; flag = unknown filter
  kTest,      // x = input, name, items = arguments; flag = unknown test
  kNot,       // x
  kNeg,       // x
  kPos,       // x
  kBinary,    // name = operator (+ - * / // % **), x, y
  kConcat,    // items (~)
  kCompare,   // x = first operand, strs = operators, items = following operands
  kAnd,       // x, y
  kOr,        // x, y
  kCondExpr,  // x = value if true, y = condition, z = value if false (optional)
};

struct Node;
using NodePtr = std::unique_ptr<Node>;

struct Node {
  NodeKind kind;
  uint32_t offset = 0;  // byte offset in the normalised source, for error positions
  bool flag = false;
  std::string name;
  Value value;
  NodePtr x, y, z;
  std::vector<NodePtr> items;
  std::vector<std::string> strs;
  std::vector<NodePtr> body, orelse;
};

// A parsed template.
struct Program {
  std::string name;    // for error messages, e.g. the file name
  std::string source;  // normalised source; Node offsets point into it
  std::vector<NodePtr> body;
  // 1-based line and column (in characters) of a byte offset.
  std::pair<int, int> position(uint32_t offset) const;
};

// An error with its position, before it becomes a quanta::tokenizer::TemplateError.
struct PositionedError : std::exception {
  PositionedError(PyError e, uint32_t off) : error(std::move(e)), offset(off) {}
  const char* what() const noexcept override { return error.message.c_str(); }
  PyError error;
  uint32_t offset;
};

// Throws PositionedError (type "TemplateSyntaxError" or "TemplateAssertionError").
std::unique_ptr<Program> parse_program(std::string_view source, std::string name);

// Filter and test names that jinja2 (as transformers sets it up) knows, whether or not this
// interpreter implements them. Unknown names fail at parse time outside if-statements and
// conditional expressions, at run time inside them, as in jinja2 3.x.
bool is_known_filter(std::string_view name);
bool is_known_test(std::string_view name);

}  // namespace quanta::tokenizer::jinja
