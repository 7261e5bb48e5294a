// libFuzzer target for the grammar engine: the texts clients send as `ebnf`, `regex` and
// `json_schema`, compiled and then matched.
//
// The first input byte picks the kind (0: EBNF, 1: regex, 2: JSON Schema); the rest up to a NUL is
// the grammar, what follows the NUL is a text fed to the matcher token by token over a small
// vocabulary (its bytes, pairs and a few words), with a mask built at every step. Bad input must
// end in quanta::Error, never in a crash, a sanitizer report, a hang or another exception.
//
// Build and run: tests/fuzz/run.sh (clang++ -fsanitize=fuzzer,address,undefined).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "quanta/core/error.h"
#include "quanta/grammar/grammar.h"
#include "quanta/grammar/matcher.h"

namespace {

std::shared_ptr<const quanta::grammar::TokenVocab> vocab() {
  static const auto v = [] {
    std::vector<std::string> t;
    for (int b = 1; b < 256; ++b) t.emplace_back(1, static_cast<char>(b));
    for (const char* w : {"{\"", "\":", "\",", "true", "null", "ab", "\xC3\xA9", "  ", "\n"}) t.emplace_back(w);
    t.emplace_back("<end>");
    const auto end = static_cast<int32_t>(t.size() - 1);
    return std::make_shared<quanta::grammar::TokenVocab>(std::move(t), std::vector<int32_t>{end});
  }();
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string all(reinterpret_cast<const char*>(data) + 1, size - 1);
  const size_t nul = all.find('\0');
  const std::string text = all.substr(0, nul);
  const std::string input = nul == std::string::npos ? std::string() : all.substr(nul + 1);
  try {
    std::string ebnf;
    switch (data[0] % 3) {
      case 0: ebnf = text; break;
      case 1: ebnf = quanta::grammar::regex_to_ebnf(text); break;
      default: ebnf = quanta::grammar::json_schema_to_ebnf(text); break;
    }
    auto g = std::make_shared<quanta::grammar::CompiledGrammar>(quanta::grammar::compile_ebnf(ebnf), vocab());
    quanta::grammar::Matcher m(g);
    (void)m.mask();
    for (unsigned char c : input) {
      // Byte b is token b - 1 (NUL has no token).
      const int32_t tok = c == 0 ? vocab()->size() - 1 : c - 1;
      if (!m.accepts(tok)) break;
      m.advance(tok);
      if (m.finished()) break;
      (void)m.mask();
    }
  } catch (const quanta::Error&) {
  }
  return 0;
}
