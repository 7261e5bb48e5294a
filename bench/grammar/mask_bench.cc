// Time to build a grammar's vocabulary mask on a real vocabulary, per state of a generation.
//
//   build/bench_grammar_mask models/gemma-3-270m-q4_k_m.gguf
//
// For each grammar, walks a fixed text token by token (the tokenizer's own encoding of it) and
// times the mask at every step: cold (a fresh matcher and an empty mask cache: the first request
// of a schema at that state) and within one request (the matcher's transition tables and the
// grammar's mask cache kept from the steps before). Mean and worst step, in milliseconds.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "quanta/grammar/grammar.h"
#include "quanta/grammar/matcher.h"
#include "quanta/tokenizer/tokenizer.h"

using namespace quanta;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL (a .gguf file or a folder with tokenizer.json)\n", argv[0]);
    return 2;
  }
  const auto tok = tokenizer::Tokenizer::load(argv[1]);
  auto t0 = Clock::now();
  const std::vector<std::string> bytes = tok.vocab_bytes();
  auto vocab = std::make_shared<grammar::TokenVocab>(bytes, tok.stop_ids());
  std::printf("vocabulary: %d tokens, prepared in %.0f ms\n", tok.vocab_size(),
              std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  struct Case {
    const char* name;
    std::string ebnf, text;
  };
  const std::vector<Case> cases = {
      {"json_object", grammar::json_object_ebnf(), R"({"name": "Ada Lovelace", "born": 1815, "tags": ["math", "poetry"], "alive": false})"},
      {"json_schema", grammar::json_schema_to_ebnf(R"({"type":"object","properties":{"name":{"type":"string","maxLength":40},
         "born":{"type":"integer"},"tags":{"type":"array","items":{"type":"string"},"maxItems":4},"alive":{"type":"boolean"}},
         "required":["name","born","tags","alive"]})"),
       R"({"name": "Ada Lovelace", "born": 1815, "tags": ["math", "poetry"], "alive": false})"},
      {"regex", grammar::regex_to_ebnf(R"(\d{3}-\d{4} [A-Z][a-z]+ (yes|no))"), "555-1234 Hello yes"},
  };
  for (const Case& c : cases) {
    auto g = grammar::compile_ebnf(c.ebnf);
    const std::vector<int32_t> ids = tok.encode(c.text, false, false);
    std::vector<double> cold, request;
    // One request: a matcher through the text, its tables and the grammar's mask cache kept.
    grammar::Matcher m(std::make_shared<grammar::CompiledGrammar>(g, vocab));
    for (size_t i = 0; i < ids.size(); ++i) {
      // Cold: a new grammar (empty mask cache) and matcher brought to this prefix.
      grammar::Matcher fresh(std::make_shared<grammar::CompiledGrammar>(g, vocab));
      for (size_t k = 0; k < i; ++k) fresh.advance(ids[k]);
      auto a = Clock::now();
      (void)fresh.mask();
      cold.push_back(std::chrono::duration<double, std::milli>(Clock::now() - a).count());
      a = Clock::now();
      (void)m.mask();
      request.push_back(std::chrono::duration<double, std::milli>(Clock::now() - a).count());
      if (!m.accepts(ids[i])) {
        std::printf("%s: the text's token %zu is not accepted\n", c.name, i);
        break;
      }
      m.advance(ids[i]);
    }
    auto mean = [](const std::vector<double>& v) { double s = 0; for (double x : v) s += x; return v.empty() ? 0 : s / static_cast<double>(v.size()); };
    std::printf("%-12s %3zu steps: cold mask %.2f ms mean, %.2f ms worst; in one request %.2f ms mean, %.2f ms worst\n",
                c.name, ids.size(), mean(cold), *std::max_element(cold.begin(), cold.end()), mean(request),
                *std::max_element(request.begin(), request.end()));
  }
  return 0;
}
