// Context-free grammars over bytes, for constrained decoding.
//
// A grammar is written in the GBNF-like EBNF that llama.cpp and SGLang (xgrammar) accept:
//   root   ::= "{" ws pair ("," ws pair)* "}"      # comments run to the end of the line
//   pair   ::= [a-z]+ ws ":" ws ( "true" | "false" )
//   ws     ::= [ \t\n]{0,4}
// Strings "..." and classes [...] / [^...] hold characters with the escapes \n \r \t \\ \"
// \' \] \[ \- \/ \xHH \uHHHH \UHHHHHHHH; `.` is any character but a newline; items repeat
// with * + ? {m} {m,} {m,n}. Rule names may hold letters, digits, '_' and '-'; `root` starts.
// JSON Schema (json_schema.cc) and regular expressions (regex.cc) are translated to this text.
//
// Compiled, every terminal is a byte set (one byte) or a UTF-8 class (one character of a
// set of code points, matched byte by byte), so tokens are matched as the bytes they
// decode to, whatever character boundaries they cut. Left recursion is refused at compile
// time (the matcher expands rules depth first and would never stop), as llama.cpp does.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace quanta::grammar {

// A set of bytes, one bit each.
struct ByteSet {
  std::array<uint64_t, 4> bits{};
  bool has(uint8_t b) const { return (bits[b >> 6] >> (b & 63)) & 1; }
  void add(uint8_t b) { bits[b >> 6] |= uint64_t{1} << (b & 63); }
  void add_range(uint8_t lo, uint8_t hi) {
    for (int b = lo; b <= hi; ++b) add(static_cast<uint8_t>(b));
  }
  bool operator==(const ByteSet&) const = default;
};

// One character of a set of code points, as its UTF-8 encodings: each sequence is 2 to 4
// byte ranges (one-byte characters live in `ascii`).
struct Utf8Class {
  ByteSet ascii;
  std::vector<std::vector<std::pair<uint8_t, uint8_t>>> seqs;
};

struct Element {
  enum Kind : uint8_t { kEnd, kRule, kBytes, kClass };
  Kind kind;
  int32_t value;  // rule id, byte-set id or class id
};

struct Grammar {
  // Every alternative of every rule, each ended by a kEnd element.
  std::vector<Element> elements;
  std::vector<std::vector<int32_t>> alternatives;  // per rule: where each alternative starts
  std::vector<std::string> rule_names;
  std::vector<ByteSet> byte_sets;
  std::vector<Utf8Class> classes;
  int32_t root = 0;
};

// Limits against grammars that would exhaust memory (x{1000}{1000}{1000}).
inline constexpr size_t kMaxGrammarElements = 1 << 21;
inline constexpr int kMaxRepetition = 10000;

// Parses and compiles EBNF text. Throws quanta::Error naming the line and column of a syntax
// error, an undefined rule, a left-recursive rule or a grammar over the size limits; `what`
// prefixes the message (e.g. "ebnf").
std::shared_ptr<const Grammar> compile_ebnf(std::string_view text, const std::string& what = "ebnf");

// Translations to EBNF text, each with a `root` rule. Throw quanta::Error naming the part
// (schema path, regex position) that cannot be translated.
std::string json_schema_to_ebnf(std::string_view schema_json);
std::string regex_to_ebnf(std::string_view pattern);
// The expression (no rule) a regex becomes. json_string: as the inside of a JSON string (quotes
// and backslashes escaped, control characters and unescaped quotes never produced); anchored:
// the whole text matches, else a match anywhere (JSON Schema's `pattern`).
std::string regex_to_expression(std::string_view pattern, bool json_string, bool anchored);
// Any JSON object (OpenAI's response_format json_object).
std::string json_object_ebnf();

// Writes `s` as an EBNF string literal (quotes included), escaping what needs it.
std::string ebnf_literal(std::string_view s);

}  // namespace quanta::grammar
