// Structured outputs for the server: request fields turned into compiled grammars.
//
// One cache per server: a grammar is compiled once per distinct text and shared by the
// requests that use it, with its mask cache (grammar/matcher.h). The vocabulary's token bytes
// are read from the tokenizer the first time a grammar is asked for.
#pragma once

#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "quanta/grammar/matcher.h"
#include "quanta/server/chat_output.h"
#include "quanta/tokenizer/tokenizer.h"

namespace quanta::server {

class GrammarCache {
 public:
  GrammarCache(const tokenizer::Tokenizer& tok, std::vector<int32_t> end_tokens);
  // `ebnf` compiled (or found). Throws quanta::Error whose field is `field`.
  std::shared_ptr<const grammar::CompiledGrammar> get(const std::string& ebnf, const std::string& field);

 private:
  const tokenizer::Tokenizer& tok_;
  std::vector<int32_t> end_tokens_;
  std::mutex mu_;
  std::shared_ptr<const grammar::TokenVocab> vocab_;
  std::list<std::pair<std::string, std::shared_ptr<const grammar::CompiledGrammar>>> lru_;  // newest last
  static constexpr size_t kMaxGrammars = 16;
};

// The EBNF text of one constraint: kind "json_schema" (a schema as JSON text), "regex", "ebnf",
// or "json_object". Throws quanta::Error naming `field`.
std::string constraint_ebnf(const std::string& kind, const std::string& text, const std::string& field);

// tool_choice "required" (only_name empty) or a named function: the answer is one call (or, if
// `parallel`, several) in the family's syntax, each naming a listed tool with arguments valid for
// its parameters. Throws quanta::Error (field "tool_choice") for a format it cannot constrain.
std::string tool_call_ebnf(const nlohmann::json& tools, const std::string& only_name, ToolCallFormat format, bool parallel);

}  // namespace quanta::server
