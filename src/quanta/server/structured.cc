#include "quanta/server/structured.h"

#include <cctype>

#include "quanta/core/error.h"
#include "quanta/grammar/grammar.h"

namespace quanta::server {

using nlohmann::json;

GrammarCache::GrammarCache(const tokenizer::Tokenizer& tok, std::vector<int32_t> end_tokens)
    : tok_(tok), end_tokens_(std::move(end_tokens)) {}

std::shared_ptr<const grammar::CompiledGrammar> GrammarCache::get(const std::string& ebnf, const std::string& field) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = lru_.begin(); it != lru_.end(); ++it)
    if (it->first == ebnf) {
      lru_.splice(lru_.end(), lru_, it);
      return lru_.back().second;
    }
  std::shared_ptr<const grammar::Grammar> g;
  try {
    g = grammar::compile_ebnf(ebnf, field);
  } catch (const Error& e) {
    throw Error(e.message(), {.field = field});
  }
  if (!vocab_) {
    vocab_ = std::make_shared<grammar::TokenVocab>(tok_.vocab_bytes(), end_tokens_);
  }
  auto compiled = std::make_shared<grammar::CompiledGrammar>(std::move(g), vocab_);
  lru_.emplace_back(ebnf, compiled);
  if (lru_.size() > kMaxGrammars) lru_.pop_front();
  return compiled;
}

std::string constraint_ebnf(const std::string& kind, const std::string& text, const std::string& field) {
  try {
    if (kind == "json_schema") return grammar::json_schema_to_ebnf(text);
    if (kind == "regex") return grammar::regex_to_ebnf(text);
    if (kind == "json_object") return grammar::json_object_ebnf();
    return text;  // ebnf
  } catch (const Error& e) {
    throw Error(e.message(), {.field = field});
  }
}

std::string tool_call_ebnf(const json& tools, const std::string& only_name, ToolCallFormat format, bool parallel) {
  // One call as a JSON object: {"name": <a tool>, "arguments" (Llama 3: "parameters"): <its schema>}.
  const std::string args_key = format == ToolCallFormat::kLlama3 ? "parameters" : "arguments";
  json any_of = json::array();
  for (const json& t : tools) {
    const json& f = t["function"];
    const std::string name = f["name"].get<std::string>();
    if (!only_name.empty() && name != only_name) continue;
    json params = f.contains("parameters") && f["parameters"].is_object() ? f["parameters"] : json{{"type", "object"}};
    json call = {{"type", "object"},
                 {"properties", {{"name", {{"const", name}}}, {args_key, params}}},
                 {"required", {"name", args_key}}};
    // "#/$defs/..." in the parameters points into the parameters: keep those at the call's root.
    for (const char* defs : {"$defs", "definitions"})
      if (params.contains(defs)) call[defs] = params[defs];
    any_of.push_back(std::move(call));
  }
  // Each call schema is translated on its own (its $defs at its root) and its rules renamed apart.
  std::string rules, call;
  for (size_t i = 0; i < any_of.size(); ++i) {
    std::string g;
    try {
      g = grammar::json_schema_to_ebnf(any_of[i].dump());
    } catch (const Error& e) {
      throw Error("tools[" + std::to_string(i) + "].function.parameters: " + e.message(), {.field = "tools"});
    }
    // Prefix every rule name of this translation (names are [a-z0-9-] words at line starts and in bodies).
    const std::string prefix = "t" + std::to_string(i) + "-";
    std::string renamed;
    size_t pos = 0;
    bool in_string = false, in_class = false;
    while (pos < g.size()) {
      const char c = g[pos];
      if (in_string || in_class) {
        renamed += c;
        if (c == '\\' && pos + 1 < g.size()) {
          renamed += g[++pos];
        } else if ((in_string && c == '"') || (in_class && c == ']')) {
          in_string = in_class = false;
        }
        ++pos;
        continue;
      }
      if (c == '"') in_string = true;
      if (c == '[') in_class = true;
      if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') {
        size_t end = pos;
        while (end < g.size() && (std::isalnum(static_cast<unsigned char>(g[end])) || g[end] == '_' || g[end] == '-')) ++end;
        renamed += prefix + g.substr(pos, end - pos);
        pos = end;
        continue;
      }
      renamed += c;
      ++pos;
    }
    rules += renamed;
    call += (call.empty() ? "" : " | ") + prefix + "root";
  }
  if (call.empty()) throw Error("tool_choice names no function in 'tools'", {.field = "tool_choice"});
  std::string root;
  switch (format) {
    case ToolCallFormat::kQwen25: {
      const std::string one = "\"<tool_call>\\n\" call \"\\n</tool_call>\"";
      root = one + (parallel ? " ( \"\\n\" " + one + " )*" : "");
      break;
    }
    case ToolCallFormat::kLlama3:
      root = std::string("call") + (parallel ? " ( \"; \" call )*" : "");
      break;
    default:
      throw Error(std::string("tool_choice \"required\" or a named function is not supported with the '") +
                      format_name(format) + "' tool-call parser (its markers are special tokens a grammar cannot write)",
                  {.field = "tool_choice"});
  }
  return "root ::= " + root + "\ncall ::= " + call + "\n" + rules;
}

}  // namespace quanta::server
