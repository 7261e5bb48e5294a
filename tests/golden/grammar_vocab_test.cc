// Grammar masks over the default model's real vocabulary (262144 tokens, byte fallback,
// SentencePiece spaces) equal brute force: every token tried on its own at each step.
#include <gtest/gtest.h>

#include "quanta/grammar/grammar.h"
#include "quanta/grammar/matcher.h"
#include "quanta/tokenizer/tokenizer.h"
#include "grammar_masks.h"
#include "test_util.h"

namespace quanta::grammar {
namespace {

TEST(GrammarVocab, MasksEqualBruteForceOnTheDefaultModel) {
  const auto tok = tokenizer::Tokenizer::load(test::source_path("models/gemma-3-270m-q4_k_m.gguf"));
  const std::vector<std::string> bytes = tok.vocab_bytes();
  EXPECT_EQ(bytes[static_cast<size_t>(*tok.piece_to_token("<0x41>"))], "A");
  EXPECT_EQ(bytes[static_cast<size_t>(*tok.piece_to_token("\xE2\x96\x81the"))], " the");
  auto vocab = std::make_shared<TokenVocab>(bytes, tok.stop_ids());
  const std::vector<std::string> grammars = {
      json_schema_to_ebnf(R"({"type":"object","properties":{"city":{"type":"string"},"n":{"type":"number"},
          "tags":{"type":"array","items":{"enum":["a","b c"]}}},"required":["city","n"]})"),
      regex_to_ebnf("(Yes|No), [0-9]{1,3} (é|日本)+"),
      "root ::= \"<\" [a-z]+ \">\" ( [^<]{1,8} ) \"</\" [a-z]+ \">\"\n"};
  uint32_t seed = 5;
  for (const auto& text : grammars) {
    SCOPED_TRACE(text);
    test::check_grammar_masks(std::make_shared<CompiledGrammar>(compile_ebnf(text), vocab), 1, 8, seed++);
  }
}

}  // namespace
}  // namespace quanta::grammar
