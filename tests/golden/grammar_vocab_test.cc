// Grammar masks over the default model's real vocabulary (262144 tokens, byte fallback,
// SentencePiece spaces) equal brute force: every token tried on its own at each step.
#include <gtest/gtest.h>

#include <random>

#include "quanta/grammar/grammar.h"
#include "quanta/grammar/matcher.h"
#include "quanta/tokenizer/tokenizer.h"
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
  std::mt19937 rng(5);
  for (const auto& text : grammars) {
    SCOPED_TRACE(text);
    auto g = std::make_shared<CompiledGrammar>(compile_ebnf(text), vocab);
    Matcher m(g);
    for (int step = 0; step < 8 && !m.finished(); ++step) {
      auto mask = m.mask();
      std::vector<int32_t> allowed;
      for (int32_t id = 0; id < vocab->size(); ++id) {
        const bool bit = ((*mask)[static_cast<size_t>(id) >> 6] >> (id & 63)) & 1;
        ASSERT_EQ(bit, m.accepts(id)) << "token " << id << " '" << bytes[static_cast<size_t>(id)] << "' at step " << step;
        if (bit) allowed.push_back(id);
      }
      ASSERT_FALSE(allowed.empty());
      const int32_t pick = allowed[std::uniform_int_distribution<size_t>(0, allowed.size() - 1)(rng)];
      if (vocab->is_end(pick)) break;
      m.advance(pick);
    }
  }
}

}  // namespace
}  // namespace quanta::grammar
